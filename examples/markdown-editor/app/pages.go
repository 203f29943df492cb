package app

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed templates static
var assetsFS embed.FS

// assets are the parsed templates and the static files.
type assets struct {
	pages      map[string]*template.Template // by page name, each with the layout
	static     fs.FS
	version    string      // content hash of the static files, for cache busting
	script     template.JS // the inline script included in every page
	scriptHash string      // its CSP source expression, 'sha256-...'
}

var pageNames = []string{"list", "edit", "error"}

func loadAssets() (*assets, error) {
	static, err := fs.Sub(assetsFS, "static")
	if err != nil {
		return nil, err
	}
	a := &assets{static: static, pages: map[string]*template.Template{}}

	js, err := fs.ReadFile(static, "editor.js")
	if err != nil {
		return nil, err
	}
	a.script = template.JS(js)
	sum := sha256.Sum256(js)
	a.scriptHash = "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"

	h := sha256.New()
	err = fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.version = hex.EncodeToString(h.Sum(nil))[:12]

	layout, err := template.New("layout.html").Funcs(templateFuncs).ParseFS(assetsFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	for _, name := range pageNames {
		t, err := layout.Clone()
		if err != nil {
			return nil, err
		}
		if _, err := t.ParseFS(assetsFS, "templates/"+name+".html"); err != nil {
			return nil, err
		}
		a.pages[name] = t
	}
	return a, nil
}

// staticHandler serves the embedded static files under /static/. Requests
// that carry the current asset version may be cached for good.
func (a *assets) staticHandler() http.Handler {
	files := http.StripPrefix("/static/", http.FileServerFS(a.static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		if r.URL.Query().Get("v") == a.version {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

var templateFuncs = template.FuncMap{
	// iso formats a time for <time datetime>.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// full formats a time for people.
	"full": func(t time.Time) string { return t.UTC().Format("Jan 2, 2006 15:04 UTC") },
	// ago formats a time relative to now.
	"ago": func(t time.Time) string { return ago(time.Since(t), t) },
}

func ago(d time.Duration, t time.Time) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return strconv.Itoa(n) + " " + unit + "s ago"
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d < 7*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	default:
		return t.UTC().Format("Jan 2, 2006")
	}
}

// envInfo describes the environment in the page footer.
type envInfo struct {
	Key        string
	URL        string
	SHA        string
	ShortSHA   string
	Branch     string
	Number     string
	Production bool
	Database   string
}

// pageData is what every template gets.
type pageData struct {
	Title        string // <title> prefix
	Banner       string
	Env          envInfo
	AssetVersion string
	Script       template.JS
	Flash        string

	// list
	Documents []document

	// edit
	Doc     document
	Preview template.HTML
	Error   string

	// error
	Message string
}

func (s *server) page(title string) pageData {
	return pageData{
		Title:  title,
		Banner: s.cfg.Banner,
		Env: envInfo{
			Key:        s.cfg.PreviewKey,
			URL:        s.cfg.PreviewURL,
			SHA:        s.cfg.PreviewSHA,
			ShortSHA:   s.cfg.shortSHA(),
			Branch:     s.cfg.PreviewBranch,
			Number:     s.cfg.PreviewNumber,
			Production: s.cfg.PreviewProduction,
			Database:   s.db.label(),
		},
		AssetVersion: s.assets.version,
		Script:       s.assets.script,
	}
}

// render executes a page into a buffer first, so a template error becomes a
// clean 500 rather than half a page.
func (s *server) render(w http.ResponseWriter, r *http.Request, code int, name string, data pageData) {
	var buf bytes.Buffer
	if err := s.assets.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("render page failed", "page", name, "err", err)
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = buf.WriteTo(w)
}

func (s *server) renderError(w http.ResponseWriter, r *http.Request, code int, title, message string) {
	data := s.page(title)
	data.Message = message
	s.render(w, r, code, "error", data)
}

func (s *server) documentNotFound(w http.ResponseWriter, r *http.Request) {
	s.renderError(w, r, http.StatusNotFound, "Document not found", "This document does not exist. It may have been deleted.")
}

var flashes = map[string]string{
	"created": "Document created.",
	"saved":   "Saved.",
	"deleted": "Document deleted.",
}

func (s *server) listPage(w http.ResponseWriter, r *http.Request) {
	docs, err := s.store.list(r.Context())
	if err != nil {
		s.internalError(w, r, err, false)
		return
	}
	data := s.page("Documents")
	data.Documents = docs
	data.Flash = flashes[r.URL.Query().Get("done")]
	s.render(w, r, http.StatusOK, "list", data)
}

func (s *server) newPage(w http.ResponseWriter, r *http.Request) {
	s.renderEditor(w, r, http.StatusOK, document{}, "")
}

func (s *server) editPage(w http.ResponseWriter, r *http.Request) {
	id, ok := documentID(r)
	if !ok {
		s.documentNotFound(w, r)
		return
	}
	d, err := s.store.get(r.Context(), id)
	if errors.Is(err, errNotFound) {
		s.documentNotFound(w, r)
		return
	}
	if err != nil {
		s.internalError(w, r, err, false)
		return
	}
	s.renderEditor(w, r, http.StatusOK, d, flashes[r.URL.Query().Get("done")])
}

// renderEditor shows the editor for d (a new document if d.ID is 0), with the
// preview rendered server-side so it is right before any script runs.
func (s *server) renderEditor(w http.ResponseWriter, r *http.Request, code int, d document, flash string) {
	preview, err := renderMarkdown(d.Content)
	if err != nil {
		s.internalError(w, r, err, false)
		return
	}
	title := d.Title
	if d.ID == 0 {
		title = "New document"
	}
	data := s.page(title)
	data.Doc = d
	data.Preview = preview
	data.Flash = flash
	s.render(w, r, code, "edit", data)
}

func (s *server) createPage(w http.ResponseWriter, r *http.Request) {
	title, content, ok := s.readForm(w, r)
	if !ok {
		return
	}
	d, err := s.store.create(r.Context(), title, content)
	if err != nil {
		s.formStoreError(w, r, document{Title: title, Content: content}, err)
		return
	}
	s.log.Info("document created", "id", d.ID)
	http.Redirect(w, r, fmt.Sprintf("/documents/%d?done=created", d.ID), http.StatusSeeOther)
}

func (s *server) updatePage(w http.ResponseWriter, r *http.Request) {
	id, ok := documentID(r)
	if !ok {
		s.documentNotFound(w, r)
		return
	}
	title, content, ok := s.readForm(w, r)
	if !ok {
		return
	}
	d, err := s.store.update(r.Context(), id, title, content)
	if err != nil {
		s.formStoreError(w, r, document{ID: id, Title: title, Content: content}, err)
		return
	}
	s.log.Info("document updated", "id", d.ID)
	http.Redirect(w, r, fmt.Sprintf("/documents/%d?done=saved", d.ID), http.StatusSeeOther)
}

func (s *server) deletePage(w http.ResponseWriter, r *http.Request) {
	id, ok := documentID(r)
	if !ok {
		s.documentNotFound(w, r)
		return
	}
	err := s.store.delete(r.Context(), id)
	if errors.Is(err, errNotFound) {
		s.documentNotFound(w, r)
		return
	}
	if err != nil {
		s.internalError(w, r, err, false)
		return
	}
	s.log.Info("document deleted", "id", id)
	http.Redirect(w, r, "/?done=deleted", http.StatusSeeOther)
}

// readForm parses the editor form. On failure it answers and returns false.
func (s *server) readForm(w http.ResponseWriter, r *http.Request) (title, content string, ok bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.renderError(w, r, http.StatusRequestEntityTooLarge, "Document too large",
				fmt.Sprintf("A document can be at most %d KiB.", maxContentBytes>>10))
			return "", "", false
		}
		s.renderError(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return "", "", false
	}
	// Browsers send textarea line breaks as CRLF.
	content = strings.ReplaceAll(r.PostForm.Get("content"), "\r\n", "\n")
	return r.PostForm.Get("title"), content, true
}

// formStoreError answers a failed create or update from the HTML form: the
// editor again with the message for invalid input, the not-found page, or a
// 500.
func (s *server) formStoreError(w http.ResponseWriter, r *http.Request, d document, err error) {
	var verr *validationError
	switch {
	case errors.As(err, &verr):
		preview, rerr := renderMarkdown(d.Content)
		if rerr != nil {
			s.internalError(w, r, rerr, false)
			return
		}
		title := d.Title
		if d.ID == 0 || title == "" {
			title = "Edit document"
		}
		data := s.page(title)
		data.Doc = d
		data.Preview = preview
		data.Error = strings.ToUpper(verr.msg[:1]) + verr.msg[1:] + "."
		s.render(w, r, http.StatusBadRequest, "edit", data)
	case errors.Is(err, errNotFound):
		s.documentNotFound(w, r)
	default:
		s.internalError(w, r, err, false)
	}
}
