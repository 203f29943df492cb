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

	"github.com/previewd/previewd/internal/auth/oidctest"
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

// TestSignInWiring: auth.oidc and auth.github become buttons on the
// sign-in page and redirects to their providers, back to publicURL's
// callbacks; an issuer that does not answer stops the start, naming
// auth.oidc.
func TestSignInWiring(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idp := oidctest.New(t)
	mk := func(issuer string) (*Daemon, error) {
		cfg, err := config.Parse([]byte("forge: {git: {url: "+dir+", pollInterval: 1h}}\ndatabase: {kind: none}\n"+
			"auth:\n  publicURL: http://127.0.0.1:8080/\n"+
			"  oidc: {issuer: \""+issuer+"\", clientID: "+oidctest.ClientID+", clientSecret: \"${OIDC_SECRET}\", role: operator}\n"+
			"  github: {clientID: Iv1.x, clientSecret: \"${OIDC_SECRET}\", allowedOrgs: [acme]}\n"), dir,
			func(k string) (string, bool) { return oidctest.ClientSecret, k == "OIDC_SECRET" })
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir = filepath.Join(dir, "data")
		d, err := New(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			t.Cleanup(d.close)
		}
		return d, err
	}
	d, err := mk(idp.URL)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	d.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/signin", nil))
	if page := w.Body.String(); !strings.Contains(page, `id="signin-oidc"`) || !strings.Contains(page, `id="signin-github"`) {
		t.Errorf("sign-in page lacks the provider buttons:\n%s", page)
	}
	for name, want := range map[string]string{"oidc": idp.URL + "/authorize", "github": "https://github.com/login/oauth/authorize"} {
		w := httptest.NewRecorder()
		d.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/signin/"+name, nil))
		loc, err := url.Parse(w.Header().Get("Location"))
		if err != nil || w.Code != http.StatusFound || !strings.HasPrefix(loc.String(), want+"?") ||
			loc.Query().Get("redirect_uri") != "http://127.0.0.1:8080/signin/"+name+"/callback" {
			t.Errorf("GET /signin/%s = %d to %q", name, w.Code, w.Header().Get("Location"))
		}
	}
	d.close()
	if _, err := mk(idp.URL + "/nowhere"); err == nil || !strings.Contains(err.Error(), "auth.oidc") {
		t.Errorf("a wrong issuer: %v, want an error naming auth.oidc", err)
	}
}
