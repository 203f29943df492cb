package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/auth/oidctest"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// signinFixture is a real server with sign-in providers on a real store.
type signinFixture struct {
	t   *testing.T
	st  *store.Store
	srv *httptest.Server
	log *syncLog
}

// newSigninFixture starts a server whose providers mk builds, given the
// server's base URL (for the redirect URLs).
func newSigninFixture(t *testing.T, mk func(base string) []auth.Provider) *signinFixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Upsert(ctx, env.Source{Key: "pr-3", Kind: env.KindPullRequest, Number: 3, Branch: "fix"}); err != nil {
		t.Fatal(err)
	}
	f := &signinFixture{t: t, st: st, log: &syncLog{}}
	var h http.Handler
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(f.srv.Close)
	a := auth.New(auth.Options{Tokens: tokens(), Sessions: auth.NewSessions([]byte(sessionSecret), time.Hour, nil), Revocations: st, Providers: mk(f.srv.URL)})
	h = New(Options{Store: st, Domain: "preview.test", Auth: a, Redeploy: func(string) {}, Resync: func() {},
		Logger: slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return f
}

// browser is a cookie-keeping client that follows no redirect.
func browserClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// start begins a sign-in at /signin/<name> and passes the provider's
// authorize step, returning the callback URL the provider sends back to.
func (f *signinFixture) start(c *http.Client, name, next string) *url.URL {
	f.t.Helper()
	resp := get(f.t, c, f.srv.URL+"/signin/"+name+"?next="+url.QueryEscape(next))
	if resp.StatusCode != http.StatusFound {
		f.t.Fatalf("GET /signin/%s = %d, want 302", name, resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "previewd_signin_"+name && (!ck.HttpOnly || ck.MaxAge <= 0 || ck.MaxAge > 600) {
			f.t.Errorf("state cookie %+v: want HttpOnly, short-lived", ck)
		}
	}
	at, err := resp.Location()
	if err != nil {
		f.t.Fatal(err)
	}
	if name == "oidc" && (at.Query().Get("nonce") == "" || at.Query().Get("code_challenge_method") != "S256") {
		f.t.Errorf("authorize URL %s: want a nonce and an S256 code challenge", at)
	}
	resp = get(f.t, c, at.String())
	cb, err := resp.Location()
	if err != nil {
		f.t.Fatalf("provider's authorize = %d: %v", resp.StatusCode, err)
	}
	return cb
}

// whoami is the name c's session signs in as ("anonymous" without one).
func (f *signinFixture) whoami(c *http.Client) (string, string) {
	f.t.Helper()
	resp, err := c.Get(f.srv.URL + "/api/v1/whoami")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Name, Role string }
	if resp.StatusCode != http.StatusOK {
		return "", ""
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		f.t.Fatal(err)
	}
	return p.Name, p.Role
}

func (f *signinFixture) signIns() []string {
	f.t.Helper()
	entries, err := f.st.Audit(context.Background(), 100, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Action == ActionSignIn {
			out = append(out, e.Actor+" via "+e.Via)
		}
	}
	return out
}

func hasSession(c *http.Client, base string) bool {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == auth.CookieName && ck.Value != "" {
			return true
		}
	}
	return false
}

func oidcFixture(t *testing.T, o func(*auth.OIDCOptions)) (*signinFixture, *oidctest.Provider) {
	idp := oidctest.New(t)
	f := newSigninFixture(t, func(base string) []auth.Provider {
		opts := auth.OIDCOptions{Issuer: idp.URL, ClientID: oidctest.ClientID, ClientSecret: oidctest.ClientSecret,
			RedirectURL: base + "/signin/oidc/callback", Role: auth.Operator, Secret: []byte(sessionSecret)}
		if o != nil {
			o(&opts)
		}
		p, err := auth.NewOIDC(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return []auth.Provider{p}
	})
	return f, idp
}

// TestOIDCSignIn: a good sign-in gets a session with the configured role,
// an audit row, and lands on next; a foreign next lands on /.
func TestOIDCSignIn(t *testing.T) {
	f, idp := oidcFixture(t, func(o *auth.OIDCOptions) {
		o.AllowedDomains = []string{"example.com"}
		o.AllowedGroups = []string{"engineering"}
	})
	page := body(t, f.do(t, "/signin"))
	if !strings.Contains(page, `id="signin-oidc"`) || !strings.Contains(page, `id="signin-form"`) {
		t.Errorf("sign-in page lacks the OIDC button or the token form:\n%s", page)
	}
	c := browserClient(t)
	cb := f.start(c, "oidc", "/environments/pr-3")
	resp := get(t, c, cb.String())
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/environments/pr-3" {
		t.Fatalf("callback = %d to %q, want 303 to /environments/pr-3", resp.StatusCode, resp.Header.Get("Location"))
	}
	if name, role := f.whoami(c); name != "oidc:alice@example.com" || role != "operator" {
		t.Errorf("signed in as %q (%s), want oidc:alice@example.com (operator)", name, role)
	}
	if got := f.signIns(); len(got) != 1 || got[0] != "oidc:alice@example.com via dashboard" {
		t.Errorf("audit sign-ins = %q", got)
	}
	if idp.Exchanges() != 1 {
		t.Errorf("%d codes exchanged, want 1", idp.Exchanges())
	}

	// No open redirect: next off this host goes to /.
	for _, next := range []string{"//evil.test/x", "https://evil.test/", "/\\evil.test"} {
		c := browserClient(t)
		resp := get(t, c, f.start(c, "oidc", next).String())
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("next %q: callback = %d to %q, want 303 to /", next, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// do is a plain GET for the signin fixture.
func (f *signinFixture) do(t *testing.T, path string) *http.Response {
	resp, err := noRedirect.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestOIDCSignInRefused: each bad callback or identity is refused with
// 401 (or 403 for a real but disallowed identity), and no session.
func TestOIDCSignInRefused(t *testing.T) {
	f, idp := oidcFixture(t, func(o *auth.OIDCOptions) {
		o.AllowedDomains = []string{"example.com"}
		o.AllowedGroups = []string{"engineering"}
	})
	alice := oidctest.User{Subject: "alice-1", Email: "alice@example.com", EmailVerified: true, Groups: []string{"engineering"}}
	cases := []struct {
		name  string
		user  oidctest.User
		tweak func(map[string]any)
		// cb changes the callback URL (nil: as the provider sent it).
		cb   func(*url.URL)
		want int
	}{
		{name: "bad state", user: alice, cb: func(u *url.URL) { q := u.Query(); q.Set("state", "forged"); u.RawQuery = q.Encode() }, want: 401},
		{name: "no state", user: alice, cb: func(u *url.URL) { q := u.Query(); q.Del("state"); u.RawQuery = q.Encode() }, want: 401},
		{name: "provider error", user: alice, cb: func(u *url.URL) {
			q := u.Query()
			q.Del("code")
			q.Set("error", "access_denied")
			u.RawQuery = q.Encode()
		}, want: 401},
		{name: "forged code", user: alice, cb: func(u *url.URL) { q := u.Query(); q.Set("code", "forged"); u.RawQuery = q.Encode() }, want: 401},
		{name: "wrong nonce", user: alice, tweak: func(c map[string]any) { c["nonce"] = "other" }, want: 401},
		{name: "no nonce", user: alice, tweak: func(c map[string]any) { delete(c, "nonce") }, want: 401},
		{name: "wrong audience", user: alice, tweak: func(c map[string]any) { c["aud"] = "someone-else" }, want: 401},
		{name: "wrong issuer", user: alice, tweak: func(c map[string]any) { c["iss"] = "https://issuer.invalid" }, want: 401},
		{name: "expired", user: alice, tweak: func(c map[string]any) {
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["exp"] = time.Now().Add(-time.Hour).Unix()
		}, want: 401},
		{name: "disallowed domain", user: oidctest.User{Subject: "bob", Email: "bob@elsewhere.test", EmailVerified: true, Groups: []string{"engineering"}}, want: 403},
		{name: "unverified email", user: oidctest.User{Subject: "eve", Email: "eve@example.com", Groups: []string{"engineering"}}, want: 403},
		{name: "disallowed group", user: oidctest.User{Subject: "carol", Email: "carol@example.com", EmailVerified: true, Groups: []string{"sales"}}, want: 403},
		{name: "no groups", user: oidctest.User{Subject: "dan", Email: "dan@example.com", EmailVerified: true}, want: 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idp.SetUser(tc.user)
			idp.Tweak(tc.tweak)
			defer idp.Tweak(nil)
			c := browserClient(t)
			cb := f.start(c, "oidc", "/")
			if tc.cb != nil {
				tc.cb(cb)
			}
			resp, err := c.Get(cb.String())
			if err != nil {
				t.Fatal(err)
			}
			page := body(t, resp)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("callback = %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 403 && !strings.Contains(page, "does not let your account in") {
				t.Errorf("refusal page does not say why:\n%s", page)
			}
			if hasSession(c, f.srv.URL) {
				t.Errorf("a session cookie was issued")
			}
			if name, _ := f.whoami(c); name != auth.Anonymous {
				t.Errorf("whoami = %q, want anonymous (no session)", name)
			}
		})
	}
	if got := f.signIns(); len(got) != 0 {
		t.Errorf("audit sign-ins = %q, want none", got)
	}
	if strings.Contains(f.log.String(), oidctest.ClientSecret) {
		t.Errorf("the client secret reached the log")
	}
}

// TestOIDCReplayedState: the state cookie and callback of a finished
// sign-in do not sign in again, not even from another browser.
func TestOIDCReplayedState(t *testing.T) {
	f, _ := oidcFixture(t, nil)
	c := browserClient(t)
	cb := f.start(c, "oidc", "/")
	u, _ := url.Parse(f.srv.URL + "/signin/oidc")
	var state *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "previewd_signin_oidc" {
			state = ck
		}
	}
	if state == nil {
		t.Fatal("no state cookie")
	}
	if resp := get(t, c, cb.String()); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first callback = %d, want 303", resp.StatusCode)
	}
	// The state cookie is cleared once used.
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "previewd_signin_oidc" {
			t.Errorf("state cookie still set after the callback")
		}
	}
	// A copy of it, replayed with the same callback, is refused.
	req, _ := http.NewRequest("GET", cb.String(), nil)
	req.AddCookie(&http.Cookie{Name: state.Name, Value: state.Value})
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed callback = %d, want 401", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == auth.CookieName && ck.Value != "" {
			t.Errorf("the replay got a session")
		}
	}
	if got := f.signIns(); len(got) != 1 {
		t.Errorf("audit sign-ins = %q, want one", got)
	}
}
