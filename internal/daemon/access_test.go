package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/config"
)

// TestAuthWiring: the config's tokens guard the daemon's handler, and the
// session key made on first start is kept in the store, so a session
// survives a restart; without an auth section (on loopback) all is open.
func TestAuthWiring(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const token = "ci-0123456789abcdef0123"
	newDaemon := func(authSection string) *Daemon {
		t.Helper()
		cfg, err := config.Parse([]byte("forge: {git: {url: "+dir+", pollInterval: 1h}}\ndatabase: {kind: none}\n"+authSection), dir,
			func(k string) (string, bool) { return token, k == "CI_TOKEN" })
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir = filepath.Join(dir, "data")
		d, err := New(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.close)
		return d
	}
	get := func(h http.Handler, path string, set func(*http.Request)) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		if set != nil {
			set(r)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	open := newDaemon("")
	if w := get(open.Handler(), "/api/v1/environments", nil); w.Code != 200 {
		t.Errorf("open previewd: %d", w.Code)
	}
	open.close()

	section := "auth: {tokens: [{name: ci, token: \"${CI_TOKEN}\", role: admin}], metrics: token}\n"
	d := newDaemon(section)
	for path, want := range map[string]int{"/api/v1/environments": 401, "/metrics": 401, "/healthz": 200} {
		if w := get(d.Handler(), path, nil); w.Code != want {
			t.Errorf("GET %s without a token: %d, want %d", path, w.Code, want)
		}
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
	if w := get(d.Handler(), "/api/v1/environments", bearer); w.Code != 200 {
		t.Errorf("with the token: %d", w.Code)
	}
	r := httptest.NewRequest("POST", "/signin", strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	d.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther || len(w.Result().Cookies()) != 1 {
		t.Fatalf("sign-in: %d %v", w.Code, w.Result().Cookies())
	}
	cookie := w.Result().Cookies()[0]
	d.close()

	again := newDaemon(section)
	if w := get(again.Handler(), "/api/v1/whoami", func(r *http.Request) { r.AddCookie(cookie) }); w.Code != 200 || !strings.Contains(w.Body.String(), "token:ci") {
		t.Errorf("session after a restart: %d %s", w.Code, w.Body)
	}
}
