package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const jsonType = "application/json"

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

type documentList struct {
	Documents []document `json:"documents"`
}

// TestAPI walks the JSON API through a document's life. The steps share one
// database and run in order.
func TestAPI(t *testing.T) {
	app := newTestApp(t, nil)
	db := rawDB(t, app.env)
	var created document

	steps := []struct {
		name       string
		method     string
		path       string // %d is replaced by the created document's id
		body       string
		wantStatus int
		check      func(t *testing.T, res *http.Response, body string)
	}{
		{
			name: "list has the welcome document", method: "GET", path: "/api/documents", wantStatus: 200,
			check: func(t *testing.T, _ *http.Response, body string) {
				l := decode[documentList](t, body)
				if len(l.Documents) != 1 || l.Documents[0].Title != "Welcome to the markdown editor" ||
					!strings.Contains(l.Documents[0].HTML, "<strong>migration 3</strong>") {
					t.Errorf("documents = %+v", l.Documents)
				}
			},
		},
		{
			name: "create", method: "POST", path: "/api/documents",
			body:       `{"title": "  Notes  ", "content": "# Hello\n\nSome *text*."}`,
			wantStatus: 201,
			check: func(t *testing.T, res *http.Response, body string) {
				created = decode[document](t, body)
				if created.ID <= 0 || created.Title != "Notes" || created.Content != "# Hello\n\nSome *text*." {
					t.Errorf("created = %+v", created)
				}
				if created.HTML != "<h1>Hello</h1>\n<p>Some <em>text</em>.</p>\n" {
					t.Errorf("html = %q", created.HTML)
				}
				if time.Since(created.CreatedAt) > time.Minute || !created.CreatedAt.Equal(created.UpdatedAt) {
					t.Errorf("times: created %v, updated %v", created.CreatedAt, created.UpdatedAt)
				}
				if loc := res.Header.Get("Location"); loc != fmt.Sprintf("/api/documents/%d", created.ID) {
					t.Errorf("Location = %q", loc)
				}
				var title, content string
				if err := db.QueryRow("SELECT title, content FROM documents WHERE id = $1", created.ID).Scan(&title, &content); err != nil ||
					title != "Notes" || content != created.Content {
					t.Errorf("row: title %q, content %q, err %v", title, content, err)
				}
			},
		},
		{
			name: "get", method: "GET", path: "/api/documents/%d", wantStatus: 200,
			check: func(t *testing.T, _ *http.Response, body string) {
				got := decode[document](t, body)
				if got.ID != created.ID || got.Title != "Notes" || got.HTML != created.HTML ||
					!got.CreatedAt.Equal(created.CreatedAt) || !got.UpdatedAt.Equal(created.UpdatedAt) {
					t.Errorf("got %+v, want %+v", got, created)
				}
				if !strings.Contains(body, `"createdAt":`) || !strings.Contains(body, `"updatedAt":`) {
					t.Errorf("body lacks createdAt/updatedAt: %s", body)
				}
			},
		},
		{
			name: "list has both, newest first", method: "GET", path: "/api/documents", wantStatus: 200,
			check: func(t *testing.T, _ *http.Response, body string) {
				l := decode[documentList](t, body)
				if len(l.Documents) != 2 || l.Documents[0].ID != created.ID {
					t.Errorf("documents = %+v", l.Documents)
				}
			},
		},
		{
			name: "update", method: "PUT", path: "/api/documents/%d",
			body:       `{"title": "Renamed", "content": "~~gone~~"}`,
			wantStatus: 200,
			check: func(t *testing.T, _ *http.Response, body string) {
				got := decode[document](t, body)
				if got.ID != created.ID || got.Title != "Renamed" || got.Content != "~~gone~~" || got.HTML != "<p><del>gone</del></p>\n" {
					t.Errorf("updated = %+v", got)
				}
				if !got.CreatedAt.Equal(created.CreatedAt) || got.UpdatedAt.Before(created.UpdatedAt) {
					t.Errorf("times: created %v (was %v), updated %v", got.CreatedAt, created.CreatedAt, got.UpdatedAt)
				}
				var title string
				if err := db.QueryRow("SELECT title FROM documents WHERE id = $1", created.ID).Scan(&title); err != nil || title != "Renamed" {
					t.Errorf("row title %q, err %v", title, err)
				}
			},
		},
		{name: "update with empty title", method: "PUT", path: "/api/documents/%d", body: `{"title": "   ", "content": "x"}`, wantStatus: 400,
			check: wantError("title must not be empty")},
		{name: "create with empty title", method: "POST", path: "/api/documents", body: `{"content": "x"}`, wantStatus: 400,
			check: wantError("title must not be empty")},
		{name: "create with bad JSON", method: "POST", path: "/api/documents", body: `{"title": `, wantStatus: 400,
			check: wantError("invalid JSON")},
		{name: "create with wrong types", method: "POST", path: "/api/documents", body: `{"title": 42}`, wantStatus: 400,
			check: wantError("invalid JSON")},
		{name: "create with trailing data", method: "POST", path: "/api/documents", body: `{"title": "a"} {"title": "b"}`, wantStatus: 400,
			check: wantError("unexpected data")},
		{name: "create with empty body", method: "POST", path: "/api/documents", body: ``, wantStatus: 400,
			check: wantError("empty body")},
		{name: "create with too long title", method: "POST", path: "/api/documents", body: `{"title": "` + strings.Repeat("x", 201) + `"}`, wantStatus: 400,
			check: wantError("at most 200 characters")},
		{name: "create with too large body", method: "POST", path: "/api/documents", body: `{"title": "big", "content": "` + strings.Repeat("x", maxBodyBytes) + `"}`, wantStatus: 413,
			check: wantError("request body must be at most")},
		{name: "delete", method: "DELETE", path: "/api/documents/%d", wantStatus: 204,
			check: func(t *testing.T, _ *http.Response, body string) {
				if body != "" {
					t.Errorf("body = %q, want empty", body)
				}
				if n := queryInt(t, db, "SELECT count(*) FROM documents WHERE id = $1", created.ID); n != 0 {
					t.Errorf("row still there after delete")
				}
			}},
		{name: "get deleted", method: "GET", path: "/api/documents/%d", wantStatus: 404, check: wantError("document not found")},
		{name: "update deleted", method: "PUT", path: "/api/documents/%d", body: `{"title": "x"}`, wantStatus: 404, check: wantError("document not found")},
		{name: "delete deleted", method: "DELETE", path: "/api/documents/%d", wantStatus: 404, check: wantError("document not found")},
		{name: "get unknown id", method: "GET", path: "/api/documents/999999", wantStatus: 404, check: wantError("document not found")},
		{name: "get non-numeric id", method: "GET", path: "/api/documents/abc", wantStatus: 404, check: wantError("document not found")},
		{name: "unknown endpoint", method: "GET", path: "/api/nope", wantStatus: 404, check: wantError("no such endpoint")},
		{name: "wrong method", method: "PATCH", path: "/api/documents/1", wantStatus: 405, check: func(t *testing.T, res *http.Response, body string) {
			wantError("not allowed")(t, res, body)
			if allow := res.Header.Get("Allow"); allow != "GET, PUT, DELETE" {
				t.Errorf("Allow = %q", allow)
			}
		}},
		{name: "list after all that", method: "GET", path: "/api/documents", wantStatus: 200,
			check: func(t *testing.T, _ *http.Response, body string) {
				l := decode[documentList](t, body)
				if len(l.Documents) != 1 || l.Documents[0].ID == created.ID {
					t.Errorf("documents = %+v", l.Documents)
				}
				if n := queryInt(t, db, "SELECT count(*) FROM documents"); n != 1 {
					t.Errorf("rows = %d, want 1", n)
				}
			}},
	}
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) {
			path := s.path
			if strings.Contains(path, "%d") {
				path = fmt.Sprintf(path, created.ID)
			}
			res, body := app.do(t, s.method, path, jsonType, s.body)
			if res.StatusCode != s.wantStatus {
				t.Fatalf("%s %s: status %d, want %d; body %s", s.method, path, res.StatusCode, s.wantStatus, body)
			}
			if body != "" && !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type = %q", res.Header.Get("Content-Type"))
			}
			s.check(t, res, body)
		})
		if !ok {
			t.FailNow() // later steps depend on this one
		}
	}
}

// wantError checks a JSON error body.
func wantError(substr string) func(*testing.T, *http.Response, string) {
	return func(t *testing.T, _ *http.Response, body string) {
		t.Helper()
		e := decode[apiError](t, body)
		if !strings.Contains(e.Error, substr) {
			t.Errorf("error = %q, want it to contain %q", e.Error, substr)
		}
	}
}

func TestAPIEmptyList(t *testing.T) {
	app := newTestApp(t, nil)
	if _, err := app.srv.db.Exec("DELETE FROM documents"); err != nil {
		t.Fatal(err)
	}
	_, body := app.do(t, "GET", "/api/documents", "", "")
	if strings.TrimSpace(body) != `{"documents":[]}` {
		t.Errorf("body = %s, want an empty array, not null", body)
	}
}

func TestRender(t *testing.T) {
	app := newTestApp(t, nil)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		want       []string // substrings of the html
		notWant    []string
	}{
		{
			name: "markdown", body: `{"content": "# Title\n\n**bold** and a [link](https://example.com)"}`, wantStatus: 200,
			want: []string{"<h1>Title</h1>", "<strong>bold</strong>", `<a href="https://example.com">link</a>`},
		},
		{
			name: "GFM table and task list", body: `{"content": "| a |\n|---|\n| 1 |\n\n- [x] done"}`, wantStatus: 200,
			want: []string{"<table>", "<td>1</td>", `type="checkbox"`},
		},
		{
			name: "script block is not passed through", body: `{"content": "hi\n\n<script>alert(1)</script>\n"}`, wantStatus: 200,
			want: []string{"<p>hi</p>", "raw HTML omitted"}, notWant: []string{"<script", "alert(1)"},
		},
		{
			name: "inline HTML is not passed through", body: `{"content": "x <img src=x onerror=alert(1)> <b>y</b>"}`, wantStatus: 200,
			want: []string{"raw HTML omitted"}, notWant: []string{"<img", "onerror", "<b>"},
		},
		{
			name: "javascript links are dropped", body: `{"content": "[click](javascript:alert(1))"}`, wantStatus: 200,
			want: []string{">click</a>"}, notWant: []string{"javascript:"},
		},
		{
			name: "text is escaped", body: `{"content": "a < b & \"c\""}`, wantStatus: 200,
			want: []string{"a &lt; b &amp; &quot;c&quot;"},
		},
		{name: "empty", body: `{"content": ""}`, wantStatus: 200},
		{name: "bad JSON", body: `not json`, wantStatus: 400},
		{name: "too large", body: `{"content": "` + strings.Repeat("x", maxContentBytes+1) + `"}`, wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := app.do(t, "POST", "/api/render", jsonType, tt.body)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus != 200 {
				if e := decode[apiError](t, body); e.Error == "" {
					t.Errorf("no error message: %s", body)
				}
				return
			}
			html := decode[struct{ HTML *string }](t, body).HTML
			if html == nil {
				t.Fatalf("no html in %s", body)
			}
			for _, w := range tt.want {
				if !strings.Contains(*html, w) {
					t.Errorf("html %q lacks %q", *html, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(*html, w) {
					t.Errorf("html %q contains %q", *html, w)
				}
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	app := newTestApp(t, map[string]string{
		"PREVIEW_SHA":    "0123456789abcdef0123456789abcdef01234567",
		"PREVIEW_KEY":    "pr-42",
		"PREVIEW_BRANCH": "feature/banner",
		"APP_BANNER":     "Hello from pr-42",
	})
	res, body := app.do(t, "GET", "/healthz", "", "")
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	got := decode[map[string]any](t, body)
	want := map[string]any{
		"status":   "ok",
		"sha":      "0123456789abcdef0123456789abcdef01234567",
		"key":      "pr-42",
		"branch":   "feature/banner",
		"banner":   "Hello from pr-42",
		"database": "sqlite",
		"schema":   "",
		"file":     "test.sqlite",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", res.Header.Get("Cache-Control"))
	}

	// With the database gone, healthz says so.
	app.srv.db.Close()
	res, body = app.do(t, "GET", "/healthz", "", "")
	if res.StatusCode != 503 {
		t.Fatalf("status after closing the database = %d, want 503: %s", res.StatusCode, body)
	}
	if got := decode[health](t, body); got.Status != "unavailable" || got.Error == "" || got.Key != "pr-42" {
		t.Errorf("body = %+v", got)
	}
}

func TestCrossOriginWritesRejected(t *testing.T) {
	app := newTestApp(t, nil)
	res, _ := app.do(t, "POST", "/api/documents", jsonType, `{"title": "csrf"}`, "Sec-Fetch-Site", "cross-site")
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: status %d, want 403", res.StatusCode)
	}
	res, _ = app.do(t, "POST", "/api/documents", jsonType, `{"title": "same"}`, "Sec-Fetch-Site", "same-origin")
	if res.StatusCode != http.StatusCreated {
		t.Errorf("same-origin POST: status %d, want 201", res.StatusCode)
	}
	if n := queryInt(t, rawDB(t, app.env), "SELECT count(*) FROM documents WHERE title = 'csrf'"); n != 0 {
		t.Errorf("cross-site POST created a document")
	}
}
