package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

const (
	previewPassword = "correct horse battery"
	bypassToken     = "bypass-0123456789abcdef0123"
)

// proxyRouter sends each of its keys to one real backend over HTTP.
type proxyRouter struct {
	keys map[string]bool
	to   *url.URL
}

func (p proxyRouter) Proxy(key string) (http.Handler, bool) {
	if !p.keys[key] {
		return nil, false
	}
	return httputil.NewSingleHostReverseProxy(p.to), true
}

// previewFixture is the real server with a real echo backend behind the
// Router: the backend answers the headers it received, as JSON.
type previewFixture struct {
	t    *testing.T
	srv  *httptest.Server
	port string
	log  *syncLog
}

func newPreviewFixture(t *testing.T, access auth.PreviewAccess) *previewFixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(backend.Close)
	to, _ := url.Parse(backend.URL)
	f := &previewFixture{t: t, log: &syncLog{}}
	pv := auth.NewPreviews(auth.PreviewOptions{Access: access, Password: previewPassword, BypassToken: bypassToken, Secret: []byte(sessionSecret)})
	a := auth.New(auth.Options{Tokens: tokens(), Sessions: auth.NewSessions([]byte(sessionSecret), time.Hour, nil), Revocations: st})
	s := New(Options{
		Store: st, Domain: "preview.test", Auth: a, Previews: pv,
		Router: proxyRouter{keys: map[string]bool{"pr-3": true, "pr-4": true, env.ProductionKey: true}, to: to},
		Logger: slog.New(slog.NewTextHandler(f.log, nil)),
	})
	f.srv = httptest.NewServer(s)
	t.Cleanup(f.srv.Close)
	u, _ := url.Parse(f.srv.URL)
	f.port = u.Port()
	s.o.DashboardURL = f.srv.URL
	return f
}

func (f *previewFixture) host(key string) string { return key + ".preview.test:" + f.port }

// get sends method path to key's preview host ("" for previewd's own).
func (f *previewFixture) send(method, key, path string, header map[string]string, body io.Reader) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if key != "" {
		req.Host = f.host(key)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// echoed is the headers the backend received.
func echoed(t *testing.T, resp *http.Response) http.Header {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 from the app: %s", resp.StatusCode, body(t, resp))
	}
	var h http.Header
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// noCredentials fails if the app received any of previewd's credentials.
func noCredentials(t *testing.T, h http.Header) {
	t.Helper()
	if strings.Contains(h.Get("Cookie"), auth.PreviewCookieName) || h.Get("Authorization") != "" || h.Get(auth.BypassHeader) != "" {
		t.Fatalf("the app received previewd's credentials: %v", h)
	}
}

func previewCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == auth.PreviewCookieName {
			return c
		}
	}
	return nil
}

var formToken = regexp.MustCompile(`name="form" value="([^"]+)"`)

// TestPreviewPassword: access password by HTTP Basic and by the page; the
// cookie is the host's own and bound to its preview; the app never sees
// previewd's cookie, Authorization or bypass header; production stays
// public; the forward-auth endpoint answers the same.
func TestPreviewPassword(t *testing.T) {
	f := newPreviewFixture(t, auth.PreviewPassword)

	resp := f.send("GET", "pr-3", "/", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("no credentials: %d %q, want 401 with Basic", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req := func(user, pw string) map[string]string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(user, pw)
		return map[string]string{"Authorization": r.Header.Get("Authorization")}
	}
	if resp := f.send("GET", "pr-3", "/", req("anyone", "wrong password!"), nil); resp.StatusCode != http.StatusUnauthorized || previewCookie(t, resp) != nil {
		t.Fatalf("wrong Basic password: %d, want 401 and no cookie", resp.StatusCode)
	}
	noCredentials(t, echoed(t, f.send("GET", "pr-3", "/", req("anyone", previewPassword), nil)))

	// The page, in a browser.
	resp = f.send("GET", "pr-3", "/docs?x=1", map[string]string{"Accept": "text/html"}, nil)
	page := body(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, `id="preview-form"`) {
		t.Fatalf("browser without credentials: %d, want 401 and the password page:\n%s", resp.StatusCode, page)
	}
	m := formToken.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no form token on the page")
	}
	origin := "http://" + f.host("pr-3")
	post := func(pw string, hdr map[string]string) *http.Response {
		form := url.Values{"password": {pw}, "next": {"/docs?x=1"}, "form": {m[1]}}
		h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": origin, "Sec-Fetch-Site": "same-origin"}
		for k, v := range hdr {
			h[k] = v
		}
		return f.send("POST", "pr-3", "/.previewd/signin", h, strings.NewReader(form.Encode()))
	}
	if resp := post("wrong password!", nil); resp.StatusCode != http.StatusUnauthorized || previewCookie(t, resp) != nil {
		t.Fatalf("wrong password on the page: %d, want 401 and no cookie", resp.StatusCode)
	}
	if resp := post(previewPassword, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden || previewCookie(t, resp) != nil {
		t.Fatalf("cross-site POST: %d, want 403 and no cookie", resp.StatusCode)
	}
	resp = post(previewPassword, nil)
	c := previewCookie(t, resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/docs?x=1" || c == nil {
		t.Fatalf("right password: %d to %q, cookie %v; want 303 to /docs?x=1 with a cookie", resp.StatusCode, resp.Header.Get("Location"), c)
	}
	if c.Domain != "" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Fatalf("cookie %+v: want no Domain (this host only), HttpOnly, SameSite=Lax", c)
	}

	// The cookie opens pr-3; the app sees its own cookie only.
	h := echoed(t, f.send("GET", "pr-3", "/", map[string]string{"Cookie": "app=1; " + c.Name + "=" + c.Value + "; theme=dark"}, nil))
	noCredentials(t, h)
	if h.Get("Cookie") != "app=1; theme=dark" {
		t.Fatalf("the app's cookies %q, want app=1; theme=dark", h.Get("Cookie"))
	}
	// Tampered, and replayed on another preview's host.
	tampered := c.Value[:len(c.Value)-2] + "xx"
	if resp := f.send("GET", "pr-3", "/", map[string]string{"Cookie": c.Name + "=" + tampered}, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tampered cookie: %d, want 401", resp.StatusCode)
	}
	if resp := f.send("GET", "pr-4", "/", map[string]string{"Cookie": c.Name + "=" + c.Value}, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("pr-3's cookie on pr-4: %d, want 401", resp.StatusCode)
	}

	// The bypass header.
	noCredentials(t, echoed(t, f.send("GET", "pr-4", "/", map[string]string{auth.BypassHeader: bypassToken}, nil)))
	if resp := f.send("GET", "pr-4", "/", map[string]string{auth.BypassHeader: "not-the-token-0123456789"}, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong bypass token: %d, want 401", resp.StatusCode)
	}

	// Production stays public, and still gets no bypass header.
	h = echoed(t, f.send("GET", env.ProductionKey, "/", map[string]string{auth.BypassHeader: bypassToken, "Authorization": "Basic YXBwOnVzZXI="}, nil))
	if h.Get(auth.BypassHeader) != "" || h.Get("Authorization") != "Basic YXBwOnVzZXI=" {
		t.Fatalf("public production: the app got %v; want its own Authorization and no bypass header", h)
	}

	// Forward-auth, as ingress-nginx calls it.
	fa := func(host string, hdr map[string]string) int {
		h := map[string]string{"X-Forwarded-Host": host, "X-Original-URL": "https://" + host + "/page", "X-Original-Method": "GET"}
		for k, v := range hdr {
			h[k] = v
		}
		return f.send("GET", "", "/auth/preview", h, nil).StatusCode
	}
	for _, tc := range []struct {
		name string
		host string
		hdr  map[string]string
		want int
	}{
		{"no credentials", "pr-3.preview.test", nil, http.StatusUnauthorized},
		{"cookie", "pr-3.preview.test", map[string]string{"Cookie": c.Name + "=" + c.Value}, http.StatusOK},
		{"cookie of another preview", "pr-4.preview.test", map[string]string{"Cookie": c.Name + "=" + c.Value}, http.StatusUnauthorized},
		{"basic", "pr-4.preview.test", req("ci", previewPassword), http.StatusOK},
		{"bypass", "pr-4.preview.test", map[string]string{auth.BypassHeader: bypassToken}, http.StatusOK},
		{"production", "production.preview.test", nil, http.StatusOK},
		{"not a preview", "elsewhere.example", nil, http.StatusUnauthorized},
	} {
		if got := fa(tc.host, tc.hdr); got != tc.want {
			t.Errorf("forward-auth %s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if strings.Contains(f.log.String(), previewPassword) || strings.Contains(f.log.String(), bypassToken) {
		t.Fatal("a secret reached the log")
	}
}

// TestPreviewSignin: access signin sends a browser to previewd's sign-in
// and back with a one-time ticket, which the preview host exchanges for
// its own cookie.
func TestPreviewSignin(t *testing.T) {
	f := newPreviewFixture(t, auth.PreviewSignIn)
	resp := f.send("GET", "pr-3", "/page", map[string]string{"Accept": "text/html"}, nil)
	want := f.srv.URL + "/preview/signin?key=pr-3&next=%2Fpage"
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Fatalf("unsigned visitor: %d to %q, want 303 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	start := "/preview/signin?key=pr-3&next=%2Fpage"
	if resp := f.send("GET", "", start, map[string]string{"Accept": "text/html"}, nil); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body(t, resp), `id="signin-form"`) {
		t.Fatalf("not signed in on previewd: %d, want 401 and the sign-in page", resp.StatusCode)
	}
	// Sign in on the dashboard host, back to the start.
	form := url.Values{"token": {viewerToken}, "next": {start}}
	resp = f.send("POST", "", "/signin", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, strings.NewReader(form.Encode()))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != start {
		t.Fatalf("sign-in: %d to %q, want 303 to %q", resp.StatusCode, resp.Header.Get("Location"), start)
	}
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == auth.CookieName {
			session = c.Name + "=" + c.Value
		}
	}
	resp = f.send("GET", "", start, map[string]string{"Cookie": session}, nil)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || err != nil || loc.Host != f.host("pr-3") || loc.Path != "/.previewd/ticket" {
		t.Fatalf("signed in: %d to %q, want 303 to pr-3's ticket exchange", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A ticket of pr-3 is refused on pr-4, and does not burn.
	if resp := f.send("GET", "pr-4", loc.RequestURI(), nil, nil); resp.StatusCode != http.StatusUnauthorized || previewCookie(t, resp) != nil {
		t.Fatalf("pr-3's ticket on pr-4: %d, want 401 and no cookie", resp.StatusCode)
	}
	resp = f.send("GET", "pr-3", loc.RequestURI(), nil, nil)
	c := previewCookie(t, resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/page" || c == nil || c.Domain != "" || !c.HttpOnly {
		t.Fatalf("ticket exchange: %d to %q, cookie %+v; want 303 to /page with a host cookie", resp.StatusCode, resp.Header.Get("Location"), c)
	}
	if resp := f.send("GET", "pr-3", loc.RequestURI(), nil, nil); resp.StatusCode != http.StatusUnauthorized || previewCookie(t, resp) != nil {
		t.Fatalf("ticket replayed: %d, want 401 and no cookie", resp.StatusCode)
	}
	noCredentials(t, echoed(t, f.send("GET", "pr-3", "/page", map[string]string{"Cookie": c.Name + "=" + c.Value}, nil)))
	if resp := f.send("GET", "pr-4", "/page", map[string]string{"Cookie": c.Name + "=" + c.Value}, nil); resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("pr-3's cookie on pr-4: %d, want refused", resp.StatusCode)
	}
}

// BenchmarkPreviewAuth is the cost a protected preview adds to each
// proxied request: the cookie's verification and the strip of
// previewd's credentials.
func BenchmarkPreviewAuth(b *testing.B) {
	pv := auth.NewPreviews(auth.PreviewOptions{Access: auth.PreviewPassword, Password: previewPassword, Secret: []byte(sessionSecret)})
	w := httptest.NewRecorder()
	pv.Issue(w, httptest.NewRequest("GET", "/", nil), "pr-3", "")
	cookie := w.Result().Cookies()[0]
	line := "app=1; " + cookie.Name + "=" + cookie.Value + "; theme=dark"
	s := &Server{o: Options{Previews: pv, Logger: slog.New(slog.DiscardHandler)}}
	r := httptest.NewRequest("GET", "/", nil)
	durations := make([]time.Duration, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Header = http.Header{"Cookie": {line}, "Accept": {"text/html"}}
		t0 := time.Now()
		if !s.guardPreview(nil, r, "pr-3") {
			b.Fatal("refused")
		}
		durations = append(durations, time.Since(t0))
	}
	b.StopTimer()
	if len(durations) > 0 {
		slices.Sort(durations)
		b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds()), "p50-ns")
	}
}
