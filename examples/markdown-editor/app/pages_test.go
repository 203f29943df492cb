package app

import (
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

const formType = "application/x-www-form-urlencoded"

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

func wantContains(t *testing.T, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %q", s)
		}
	}
}

func TestPages(t *testing.T) {
	app := newTestApp(t, map[string]string{
		"PREVIEW_KEY":    "pr-7",
		"PREVIEW_SHA":    "0123456789abcdef",
		"PREVIEW_BRANCH": "feature/x",
		"PREVIEW_NUMBER": "7",
		"APP_BANNER":     "Banner <from> pr-7",
	})
	db := rawDB(t, app.env)

	// The list shows the welcome document, the banner (escaped) and the
	// environment in the footer.
	res, body := app.do(t, "GET", "/", "", "")
	if res.StatusCode != 200 {
		t.Fatalf("GET /: %d", res.StatusCode)
	}
	wantContains(t, body,
		`<div class="banner" role="status"><div class="wrap">Banner &lt;from&gt; pr-7</div></div>`,
		`>Welcome to the markdown editor</span>`,
		`href="/documents/1"`,
		`<code title="0123456789abcdef">0123456</code>`,
		`<code>feature/x</code> · PR #7`,
		`sqlite · test.sqlite`,
		`preview · pr-7`,
	)

	// The editor for a new document.
	res, body = app.do(t, "GET", "/documents/new", "", "")
	if res.StatusCode != 200 {
		t.Fatalf("GET /documents/new: %d", res.StatusCode)
	}
	wantContains(t, body, `action="/documents"`, `<textarea id="content"`, `id="preview"`, `fetch("/api/render"`)

	// Creating redirects to the new document's editor, where the preview is
	// rendered on the server.
	res, body = app.do(t, "POST", "/documents", formType, form("title", "From the form", "content", "Line *one*\r\n\r\n<script>x()</script>"))
	if res.StatusCode != 303 {
		t.Fatalf("POST /documents: %d %s", res.StatusCode, body)
	}
	loc := res.Header.Get("Location")
	m := regexp.MustCompile(`^/documents/(\d+)\?done=created$`).FindStringSubmatch(loc)
	if m == nil {
		t.Fatalf("Location = %q", loc)
	}
	var content string
	if err := db.QueryRow("SELECT content FROM documents WHERE id = $1", m[1]).Scan(&content); err != nil || content != "Line *one*\n\n<script>x()</script>" {
		t.Errorf("stored content %q (CRLF should become LF), err %v", content, err)
	}
	res, body = app.do(t, "GET", loc, "", "")
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d", loc, res.StatusCode)
	}
	wantContains(t, body,
		`<p class="flash" role="status">Document created.</p>`,
		`value="From the form"`,
		"<textarea id=\"content\" name=\"content\" spellcheck=\"true\" placeholder=\"Write markdown here…\">\nLine *one*\n\n&lt;script&gt;x()&lt;/script&gt;</textarea>",
		`<p>Line <em>one</em></p>`,
		`action="/documents/`+m[1]+`/delete"`,
	)
	if strings.Contains(body, "<script>x()") {
		t.Errorf("raw script from the document reached the page")
	}

	// Saving with an empty title shows the editor again with the error and
	// the text kept.
	res, body = app.do(t, "POST", "/documents/"+m[1], formType, form("title", " ", "content", "kept text"))
	if res.StatusCode != 400 {
		t.Fatalf("POST empty title: %d", res.StatusCode)
	}
	wantContains(t, body, `<p class="form-error" role="alert">Title must not be empty.</p>`, "kept text")
	res, body = app.do(t, "POST", "/documents", formType, "title=%FF&content=x")
	if res.StatusCode != 400 || !strings.Contains(body, "must be valid UTF-8") {
		t.Errorf("POST invalid UTF-8: %d", res.StatusCode)
	}

	// Saving.
	res, _ = app.do(t, "POST", "/documents/"+m[1], formType, form("title", "Renamed", "content", "new"))
	if res.StatusCode != 303 || res.Header.Get("Location") != "/documents/"+m[1]+"?done=saved" {
		t.Fatalf("POST save: %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	var title string
	if err := db.QueryRow("SELECT title, content FROM documents WHERE id = $1", m[1]).Scan(&title, &content); err != nil || title != "Renamed" || content != "new" {
		t.Errorf("after save: title %q, content %q, err %v", title, content, err)
	}

	// Deleting.
	res, _ = app.do(t, "POST", "/documents/"+m[1]+"/delete", formType, "")
	if res.StatusCode != 303 || res.Header.Get("Location") != "/?done=deleted" {
		t.Fatalf("POST delete: %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	if n := queryInt(t, db, "SELECT count(*) FROM documents WHERE id = $1", m[1]); n != 0 {
		t.Errorf("document still stored after delete")
	}
	_, body = app.do(t, "GET", "/?done=deleted", "", "")
	wantContains(t, body, "Document deleted.")
	if strings.Contains(body, "Renamed") {
		t.Errorf("deleted document still listed")
	}

	// Missing things.
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/documents/" + m[1], ""},
		{"POST", "/documents/" + m[1], form("title", "x")},
		{"POST", "/documents/" + m[1] + "/delete", ""},
		{"GET", "/documents/abc", ""},
		{"GET", "/no/such/page", ""},
	} {
		res, body := app.do(t, tt.method, tt.path, formType, tt.body)
		if res.StatusCode != 404 || !strings.Contains(body, "not found") {
			t.Errorf("%s %s: status %d, want an HTML 404 page", tt.method, tt.path, res.StatusCode)
		}
	}
}

func TestEmptyList(t *testing.T) {
	app := newTestApp(t, nil)
	if _, err := app.srv.db.Exec("DELETE FROM documents"); err != nil {
		t.Fatal(err)
	}
	_, body := app.do(t, "GET", "/", "", "")
	wantContains(t, body, "No documents yet.", "Environment</dt><dd>local")
	if strings.Contains(body, `class="banner"`) {
		t.Errorf("banner shown although none is configured")
	}
}

// The page's only script is inline; the Content-Security-Policy must allow
// exactly it by its hash, and nothing from elsewhere.
func TestContentSecurityPolicy(t *testing.T) {
	app := newTestApp(t, nil)
	res, body := app.do(t, "GET", "/documents/1", "", "")
	csp := res.Header.Get("Content-Security-Policy")
	scripts := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(body, -1)
	if len(scripts) != 1 {
		t.Fatalf("found %d inline scripts, want 1", len(scripts))
	}
	sum := sha256.Sum256([]byte(scripts[0][1]))
	hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if !strings.Contains(csp, "script-src "+hash+";") {
		t.Errorf("CSP %q does not allow the inline script (%s)", csp, hash)
	}
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP too lax: %q", csp)
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("page refers to an external resource")
	}
}

func TestStatic(t *testing.T) {
	app := newTestApp(t, nil)
	v := app.srv.assets.version
	tests := []struct {
		path, wantCache string
		wantStatus      int
	}{
		{"/static/style.css?v=" + v, "public, max-age=31536000, immutable", 200},
		{"/static/style.css", "no-cache", 200},
		{"/static/", "", 404},
		{"/static/nope.css", "", 404},
	}
	for _, tt := range tests {
		res, body := app.do(t, "GET", tt.path, "", "")
		if res.StatusCode != tt.wantStatus {
			t.Errorf("%s: status %d, want %d", tt.path, res.StatusCode, tt.wantStatus)
			continue
		}
		if tt.wantStatus == 200 {
			if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, ".banner") {
				t.Errorf("%s: Content-Type %q", tt.path, res.Header.Get("Content-Type"))
			}
			if got := res.Header.Get("Cache-Control"); got != tt.wantCache {
				t.Errorf("%s: Cache-Control %q, want %q", tt.path, got, tt.wantCache)
			}
		}
	}
	_, page := app.do(t, "GET", "/", "", "")
	wantContains(t, page, `href="/static/style.css?v=`+v+`"`)
}
