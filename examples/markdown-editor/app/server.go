package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// server holds what the HTTP handlers share.
type server struct {
	cfg    config
	db     *db
	store  *store
	log    *slog.Logger
	assets *assets
}

func newServer(cfg config, d *db, log *slog.Logger) (*server, error) {
	a, err := loadAssets()
	if err != nil {
		return nil, err
	}
	return &server{cfg: cfg, db: d, store: &store{db: d.DB}, log: log, assets: a}, nil
}

// handler returns the app's HTTP handler: routes, then cross-origin
// protection for unsafe methods, security headers and request logging.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()

	// HTML pages.
	mux.HandleFunc("GET /{$}", s.listPage)
	mux.HandleFunc("GET /documents/new", s.newPage)
	mux.HandleFunc("POST /documents", s.createPage)
	mux.HandleFunc("GET /documents/{id}", s.editPage)
	mux.HandleFunc("POST /documents/{id}", s.updatePage)
	mux.HandleFunc("POST /documents/{id}/delete", s.deletePage)
	mux.Handle("GET /static/", s.assets.staticHandler())

	// JSON API.
	mux.HandleFunc("GET /api/documents", s.apiList)
	mux.HandleFunc("POST /api/documents", s.apiCreate)
	mux.HandleFunc("GET /api/documents/{id}", s.apiGet)
	mux.HandleFunc("PUT /api/documents/{id}", s.apiUpdate)
	mux.HandleFunc("DELETE /api/documents/{id}", s.apiDelete)
	mux.HandleFunc("POST /api/render", s.apiRender)

	mux.HandleFunc("GET /healthz", s.healthz)

	// Everything else: 404 or 405, as JSON under /api/ and HTML elsewhere.
	mux.HandleFunc("/", s.fallback(mux))

	// Rejects cross-site browser POSTs (CSRF) using Sec-Fetch-Site and Origin;
	// requests from curl and other non-browser clients carry neither and pass.
	var h http.Handler = http.NewCrossOriginProtection().Handler(mux)
	h = s.securityHeaders(h)
	return s.logRequests(h)
}

// fallback answers requests no route matches: 405 with an Allow header if
// the path exists for other methods, else 404.
func (s *server) fallback(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			alt := r.WithContext(r.Context())
			alt.Method = m
			if _, pattern := mux.Handler(alt); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		api := strings.HasPrefix(r.URL.Path, "/api/")
		switch {
		case len(allow) > 0 && api:
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, apiError{"method " + r.Method + " not allowed for " + r.URL.Path})
		case len(allow) > 0:
			w.Header().Set("Allow", strings.Join(allow, ", "))
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		case api:
			writeJSON(w, http.StatusNotFound, apiError{"no such endpoint: " + r.Method + " " + r.URL.Path})
		default:
			s.renderError(w, r, http.StatusNotFound, "Page not found", "There is nothing at "+r.URL.Path+".")
		}
	}
}

// health is the /healthz response.
type health struct {
	Status   string `json:"status"`
	SHA      string `json:"sha"`
	Key      string `json:"key"`
	Branch   string `json:"branch"`
	Banner   string `json:"banner"`
	Database string `json:"database"`
	Schema   string `json:"schema"`
	File     string `json:"file,omitempty"`
	Error    string `json:"error,omitempty"`
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	h := health{
		Status:   "ok",
		SHA:      s.cfg.PreviewSHA,
		Key:      s.cfg.PreviewKey,
		Branch:   s.cfg.PreviewBranch,
		Banner:   s.cfg.Banner,
		Database: s.db.kind,
		Schema:   s.db.schema,
		File:     s.db.file,
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	code := http.StatusOK
	if err := s.db.PingContext(ctx); err != nil {
		s.log.Warn("health check failed", "err", err)
		h.Status = "unavailable"
		h.Error = "database unreachable"
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, h)
}

// writeJSON writes v as the JSON response body.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	// The content type is JSON and nosniff is set, so HTML in strings (such as
	// a document's rendered "html") need not be escaped as \u003c.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// securityHeaders sets headers that keep pages from loading anything but
// their own assets: the only script is the page's inline one, allowed by its
// hash.
func (s *server) securityHeaders(next http.Handler) http.Handler {
	csp := strings.Join([]string{
		"default-src 'none'",
		"script-src " + s.assets.scriptHash,
		"style-src 'self'",
		"img-src 'self' data: https:",
		"connect-src 'self'",
		"form-action 'self'",
		"base-uri 'none'",
		"frame-ancestors 'none'",
	}, "; ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests logs one line per request; health checks only at debug level.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		level := slog.LevelInfo
		if r.URL.Path == "/healthz" || strings.HasPrefix(r.URL.Path, "/static/") {
			level = slog.LevelDebug
		}
		s.log.LogAttrs(r.Context(), level, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", cmp.Or(rec.status, http.StatusOK)),
			slog.Duration("duration", time.Since(start)),
		)
	})
}

// internalError logs err and answers 500 without details.
func (s *server) internalError(w http.ResponseWriter, r *http.Request, err error, api bool) {
	if errors.Is(err, context.Canceled) {
		// The client went away; there is nobody to answer.
		return
	}
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	if api {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: "internal server error"})
		return
	}
	s.renderError(w, r, http.StatusInternalServerError, "Something went wrong", "The server could not complete the request. Try again in a moment.")
}
