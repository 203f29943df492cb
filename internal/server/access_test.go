package server

import (
	"bytes"
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
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

const (
	adminToken    = "admin-secret-0123456789abcdef"
	operatorToken = "operator-secret-0123456789abcd"
	viewerToken   = "viewer-secret-0123456789abcdef"
	wrongToken    = "wrong-secret-0123456789abcdefg"
	sessionSecret = "session-key-0123456789abcdef0123456789"
)

// syncLog is a slog destination tests can read while the server writes.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is a real server (the real handler on a real listener) on a real
// store, with three tokens and sign-in required.
type fixture struct {
	t          *testing.T
	st         *store.Store
	srv        *httptest.Server
	log        *syncLog
	mu         sync.Mutex
	redeployed []string
	reset      []string
	synced     int
}

func tokens() []auth.Token {
	return []auth.Token{
		{Name: "ci", Secret: adminToken, Role: auth.Admin},
		{Name: "deployer", Secret: operatorToken, Role: auth.Operator},
		{Name: "grafana", Secret: viewerToken, Role: auth.Viewer},
	}
}

func newFixture(t *testing.T, anonymous auth.Role, metricsToken bool) *fixture {
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
	f := &fixture{t: t, st: st, log: &syncLog{}}
	a := auth.New(auth.Options{Tokens: tokens(), Anonymous: anonymous, Sessions: auth.NewSessions([]byte(sessionSecret), time.Hour, nil), Revocations: st})
	s := New(Options{
		Store: st, Domain: "preview.test", Auth: a, MetricsToken: metricsToken,
		Gatherer: prometheus.NewRegistry(),
		Redeploy: func(k string) { f.mu.Lock(); f.redeployed = append(f.redeployed, k); f.mu.Unlock() },
		Resync:   func() { f.mu.Lock(); f.synced++; f.mu.Unlock() },
		ResetDB:  func(k string) { f.mu.Lock(); f.reset = append(f.reset, k); f.mu.Unlock() },
		Down:     func(ctx context.Context, k, actor string) error { return st.SetDown(ctx, k, actor) },
		Up:       st.ClearDown,
		Revoke:   st.Untrust,
		Webhooks: map[string]http.Handler{"github": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })},
		Plugin:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"output":{"parameters":[]}}`) }),
		Logger:   slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	f.srv = httptest.NewServer(s)
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request; header values "" are left out.
func (f *fixture) do(method, path, token string, header map[string]string, body io.Reader) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
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

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (f *fixture) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.redeployed), f.synced
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRoles: every route answers each kind of caller as its role allows:
// 401 (with WWW-Authenticate) without or with a wrong token, 403 for too
// weak a role, 2xx otherwise; the open routes need nothing.
func TestRoles(t *testing.T) {
	f := newFixture(t, auth.None, false)
	callers := []struct{ name, token string }{
		{"none", ""}, {"wrong", wrongToken}, {"viewer", viewerToken}, {"operator", operatorToken}, {"admin", adminToken},
	}
	routes := []struct {
		method, path string
		// want is the status per caller, in callers' order.
		want [5]int
	}{
		{"GET", "/api/v1/environments", [5]int{401, 401, 200, 200, 200}},
		{"GET", "/api/v1/environments/pr-3", [5]int{401, 401, 200, 200, 200}},
		{"GET", "/api/v1/environments/pr-3/logs", [5]int{401, 401, 404, 404, 404}}, // no Logs runtime: past auth
		{"GET", "/api/v1/audit", [5]int{401, 401, 200, 200, 200}},
		{"GET", "/api/v1/whoami", [5]int{200, 401, 200, 200, 200}},
		{"POST", "/api/v1/environments/pr-3/redeploy", [5]int{401, 401, 403, 202, 202}},
		{"POST", "/api/v1/environments/pr-3/db-tier", [5]int{401, 401, 403, 400, 400}}, // no body: past auth
		{"POST", "/api/v1/sync", [5]int{401, 401, 403, 202, 202}},
		{"POST", "/api/v1/environments/pr-3/reset-db", [5]int{401, 401, 403, 202, 202}},
		{"POST", "/api/v1/environments/nope/reset-db", [5]int{401, 401, 403, 404, 404}},
		{"POST", "/environments/pr-3/reset-db", [5]int{401, 401, 403, 303, 303}},
		{"GET", "/api/v1/environments/pr-3/rehearsal", [5]int{401, 401, 404, 404, 404}}, // none yet: past auth
		{"POST", "/api/v1/environments/pr-3/down", [5]int{401, 401, 403, 403, 202}},
		{"POST", "/api/v1/environments/pr-3/up", [5]int{401, 401, 403, 202, 202}},
		{"GET", "/api/v1/trusted", [5]int{401, 401, 200, 200, 200}},
		{"DELETE", "/api/v1/trusted/nobody", [5]int{401, 401, 403, 404, 404}}, // past auth: not trusted
		{"POST", "/api/v1/trusted/nobody/revoke", [5]int{401, 401, 403, 404, 404}},
		{"GET", "/", [5]int{401, 401, 200, 200, 200}},
		{"GET", "/environments/pr-3", [5]int{401, 401, 200, 200, 200}},
		{"POST", "/environments/pr-3/redeploy", [5]int{401, 401, 403, 303, 303}},
		{"POST", "/environments/pr-3/down", [5]int{401, 401, 403, 403, 303}},
		{"POST", "/environments/pr-3/up", [5]int{401, 401, 403, 303, 303}},
		{"POST", "/trusted/nobody/revoke", [5]int{401, 401, 403, 303, 303}},
		{"GET", "/healthz", [5]int{200, 200, 200, 200, 200}},
		{"GET", "/readyz", [5]int{200, 200, 200, 200, 200}},
		{"GET", "/metrics", [5]int{200, 200, 200, 200, 200}},
		{"POST", "/webhooks/github", [5]int{202, 202, 202, 202, 202}},
		{"POST", "/api/v1/getparams.execute", [5]int{200, 200, 200, 200, 200}},
	}
	for _, rt := range routes {
		for i, c := range callers {
			t.Run(rt.method+" "+rt.path+" as "+c.name, func(t *testing.T) {
				resp := f.do(rt.method, rt.path, c.token, nil, nil)
				if resp.StatusCode != rt.want[i] {
					t.Errorf("%s %s as %s = %d, want %d: %s", rt.method, rt.path, c.name, resp.StatusCode, rt.want[i], body(t, resp))
				}
				if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
			})
		}
	}
	// The acts of the callers that may act happened, twice each (API and
	// dashboard for redeploy), and nothing else.
	if r, s := f.counts(); r != 4 || s != 2 {
		t.Errorf("redeployed %d times, synced %d; want 4 and 2", r, s)
	}
	f.mu.Lock()
	if strings.Join(f.reset, ",") != "pr-3,pr-3,pr-3,pr-3" {
		t.Errorf("reset %v; want pr-3 four times (API and dashboard, operator and admin)", f.reset)
	}
	f.mu.Unlock()
	// A 401 page is the sign-in page, never the environments.
	page := body(t, f.do("GET", "/", "", nil, nil))
	if !strings.Contains(page, `id="signin-form"`) || strings.Contains(page, "pr-3") {
		t.Errorf("anonymous dashboard:\n%s", page)
	}
	// The preview proxy is not behind the API's auth.
	req, _ := http.NewRequest("GET", f.srv.URL+"/", nil)
	req.Host = "pr-3.preview.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("preview host: %d, want 503 (known, not serving)", resp.StatusCode)
	}
	// No token reaches the log, refused or accepted; the refusal says why.
	logs := f.log.String()
	for _, secret := range []string{adminToken, operatorToken, viewerToken, wrongToken} {
		if strings.Contains(logs, secret) {
			t.Errorf("a token is in the log:\n%s", logs)
		}
	}
	if !strings.Contains(logs, `reason="unknown token"`) {
		t.Errorf("the log does not say a token was unknown:\n%s", logs)
	}
}

// TestAnonymousAndMetrics: auth.anonymous viewer reads without a token but
// may not act (401: a token could); auth.metrics token puts /metrics
// behind a bearer token.
func TestAnonymousAndMetrics(t *testing.T) {
	f := newFixture(t, auth.Viewer, true)
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/environments", "", 200},
		{"GET", "/", "", 200},
		{"POST", "/api/v1/sync", "", 401},
		{"POST", "/api/v1/sync", viewerToken, 403},
		{"GET", "/api/v1/environments", wrongToken, 401},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", wrongToken, 401},
		{"GET", "/metrics", viewerToken, 200},
	} {
		if resp := f.do(tc.method, tc.path, tc.token, nil, nil); resp.StatusCode != tc.want {
			t.Errorf("%s %s (token %v) = %d, want %d", tc.method, tc.path, tc.token != "", resp.StatusCode, tc.want)
		}
	}
	if page := body(t, f.do("GET", "/", "", nil, nil)); !strings.Contains(page, `id="signin"`) || !strings.Contains(page, `data-key="pr-3"`) {
		t.Errorf("anonymous viewer's dashboard lacks the environments or a sign-in link")
	}
}

// TestCrossSite: state-changing requests from another site are refused
// before anything happens, by Sec-Fetch-Site or by an Origin that is not
// the host; same-origin ones and ones without either header (curl, CI)
// pass.
func TestCrossSite(t *testing.T) {
	f := newFixture(t, auth.None, false)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	tests := map[string]struct {
		header map[string]string
		want   int
	}{
		"cross-site":            {map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		"same-site (a preview)": {map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://pr-3.preview.test"}, 403},
		"foreign origin":        {map[string]string{"Origin": "https://evil.example"}, 403},
		"same-origin":           {map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": f.srv.URL}, 202},
		"matching origin":       {map[string]string{"Origin": "http://" + host}, 202},
		"no browser headers":    {nil, 202},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, before := f.counts()
			resp := f.do("POST", "/api/v1/sync", adminToken, tt.header, nil)
			_, after := f.counts()
			if resp.StatusCode != tt.want || (after != before) != (tt.want == 202) {
				t.Errorf("POST /api/v1/sync with %v = %d (synced %d→%d), want %d", tt.header, resp.StatusCode, before, after, tt.want)
			}
		})
	}
	// The sign-in form too (login CSRF): no session is made.
	resp := f.do("POST", "/signin", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/x-www-form-urlencoded"},
		strings.NewReader(url.Values{"token": {adminToken}}.Encode()))
	if resp.StatusCode != 403 || len(resp.Cookies()) != 0 {
		t.Errorf("cross-site sign-in = %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	// And the dashboard's buttons.
	resp = f.do("POST", "/environments/pr-3/redeploy", adminToken, map[string]string{"Sec-Fetch-Site": "cross-site"}, nil)
	if r, _ := f.counts(); resp.StatusCode != 403 || r != 0 {
		t.Errorf("cross-site redeploy button = %d, redeployed %d", resp.StatusCode, r)
	}
}

// signIn posts the sign-in form and returns the response.
func (f *fixture) signIn(token, next string, header map[string]string) *http.Response {
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"}
	for k, v := range header {
		h[k] = v
	}
	return f.do("POST", "/signin", "", h, strings.NewReader(url.Values{"token": {token}, "next": {next}}.Encode()))
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == auth.CookieName {
			return c
		}
	}
	t.Fatalf("no session cookie in %v", resp.Header["Set-Cookie"])
	return nil
}

// TestSignIn: the token form makes a signed, HttpOnly, SameSite=Lax
// session cookie (Secure over TLS), the dashboard then shows the
// environments and the operator's buttons work; sign-out clears it. A
// wrong token gets 401 and no cookie; next cannot leave the host.
func TestSignIn(t *testing.T) {
	f := newFixture(t, auth.None, false)
	resp := f.signIn(wrongToken, "/", nil)
	if resp.StatusCode != 401 || len(resp.Cookies()) != 0 || !strings.Contains(body(t, resp), "Unknown token") {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp = f.signIn(operatorToken, "/environments/pr-3", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/environments/pr-3" {
		t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	c := sessionCookie(t, resp)
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure || c.Path != "/" || c.Expires.IsZero() {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, not Secure over plain HTTP, Path=/, an expiry", c)
	}
	if strings.Contains(c.Value, operatorToken) {
		t.Errorf("the cookie holds the token")
	}
	if c := sessionCookie(t, f.signIn(operatorToken, "/", map[string]string{"X-Forwarded-Proto": "https"})); !c.Secure {
		t.Errorf("cookie over TLS (X-Forwarded-Proto: https) is not Secure")
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		if loc := f.signIn(viewerToken, next, nil).Header.Get("Location"); loc != "/" {
			t.Errorf("next %q went to %q, want /", next, loc)
		}
	}

	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(f.srv.URL)
	jar.SetCookies(u, []*http.Cookie{c})
	browser := &http.Client{Jar: jar, CheckRedirect: noRedirect.CheckRedirect}
	get := func(path string) (int, string) {
		resp, err := browser.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, body(t, resp)
	}
	post := func(path string) *http.Response {
		req, _ := http.NewRequest("POST", f.srv.URL+path, nil)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if code, page := get("/"); code != 200 || !strings.Contains(page, `data-key="pr-3"`) || !strings.Contains(page, "token:deployer") || !strings.Contains(page, `id="signout"`) {
		t.Errorf("dashboard signed in: %d\n%s", code, page)
	}
	if code, page := get("/environments/pr-3"); code != 200 || !strings.Contains(page, `id="redeploy"`) {
		t.Errorf("environment page of an operator lacks the redeploy button: %d", code)
	}
	if resp := post("/environments/pr-3/redeploy"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("redeploy button: %d", resp.StatusCode)
	}
	if r, _ := f.counts(); r != 1 {
		t.Errorf("redeployed %d times, want 1", r)
	}
	if resp := post("/signout"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
		t.Errorf("sign-out: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, _ := get("/"); code != 401 {
		t.Errorf("dashboard after sign-out: %d, want 401", code)
	}
	// A copy of the signed-out cookie is refused too, and changes nothing.
	replay := map[string]string{"Cookie": auth.CookieName + "=" + c.Value, "Sec-Fetch-Site": "same-origin"}
	if resp := f.do("GET", "/api/v1/environments", "", replay, nil); resp.StatusCode != 401 {
		t.Errorf("signed-out cookie replayed: %d, want 401", resp.StatusCode)
	}
	if resp := f.do("POST", "/environments/pr-3/redeploy", "", replay, nil); resp.StatusCode != 401 {
		t.Errorf("signed-out cookie replayed on a button: %d, want 401", resp.StatusCode)
	}
	if r, _ := f.counts(); r != 1 {
		t.Errorf("redeployed %d times after the replay, want 1", r)
	}
	if !strings.Contains(f.log.String(), `reason="session signed out"`) {
		t.Errorf("the log does not say the session was signed out")
	}

	// The audit trail, newest first, and the environment's history.
	var out struct {
		Entries []store.AuditEntry `json:"entries"`
	}
	if err := json.NewDecoder(f.do("GET", "/api/v1/audit?limit=10", viewerToken, nil, nil).Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range out.Entries {
		got = append(got, e.Actor+" "+e.Action+" "+e.Via+" "+e.Key)
	}
	want := []string{
		"token:deployer sign-out dashboard ",
		"token:deployer redeploy dashboard pr-3",
		"token:grafana sign-in dashboard ", "token:grafana sign-in dashboard ", "token:grafana sign-in dashboard ",
		"token:deployer sign-in dashboard ", "token:deployer sign-in dashboard ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var page struct {
		Entries []store.AuditEntry `json:"entries"`
		Next    int64              `json:"next"`
	}
	if err := json.NewDecoder(f.do("GET", "/api/v1/audit?limit=2", viewerToken, nil, nil).Body).Decode(&page); err != nil || len(page.Entries) != 2 || page.Next == 0 {
		t.Fatalf("limit=2: %+v, %v", page, err)
	}
	if err := json.NewDecoder(f.do("GET", "/api/v1/audit?limit=100&before="+itoa(page.Next), viewerToken, nil, nil).Body).Decode(&out); err != nil || len(out.Entries) != 5 {
		t.Errorf("before %d: %d entries, %v", page.Next, len(out.Entries), err)
	}
	var e env.Environment
	if err := json.NewDecoder(f.do("GET", "/api/v1/environments/pr-3", viewerToken, nil, nil).Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if len(e.Events) != 1 || e.Events[0].Reason != store.ReasonAction || !strings.Contains(e.Events[0].Message, "redeploy by token:deployer (dashboard)") {
		t.Errorf("history of pr-3 = %+v", e.Events)
	}
	if strings.Contains(f.log.String(), operatorToken) || strings.Contains(f.log.String(), c.Value) {
		t.Errorf("a token or a session is in the log")
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

// TestBadCookies: malformed, tampered, forged (another key), expired
// cookies and those of a token since removed get 401, change nothing and
// are cleared; on the dashboard they get the sign-in page.
func TestBadCookies(t *testing.T) {
	f := newFixture(t, auth.Viewer, false)
	good := sessionCookie(t, f.signIn(adminToken, "/", nil)).Value
	payload, sig, _ := strings.Cut(good, ".")
	tampered := []byte(payload)
	tampered[len(tampered)/2] ^= 1
	r := httptest.NewRequest("GET", "/", nil)
	mint := func(secret string, ttl time.Duration, now time.Time, p auth.Principal) string {
		w := httptest.NewRecorder()
		if _, err := auth.NewSessions([]byte(secret), ttl, func() time.Time { return now }).Issue(w, r, p); err != nil {
			t.Fatal(err)
		}
		return w.Result().Cookies()[0].Value
	}
	cookies := map[string]string{
		"malformed":     "not-a-session",
		"no signature":  payload + ".",
		"bad base64":    "%%%." + sig,
		"tampered":      string(tampered) + "." + sig,
		"forged":        mint("another-key-0123456789abcdef0123456789", time.Hour, time.Now(), auth.TokenPrincipal("ci", auth.Admin)),
		"expired":       mint(sessionSecret, time.Hour, time.Now().Add(-2*time.Hour), auth.TokenPrincipal("ci", auth.Admin)),
		"removed token": mint(sessionSecret, time.Hour, time.Now(), auth.TokenPrincipal("gone", auth.Admin)),
		"huge":          strings.Repeat("a", 5000),
	}
	for name, v := range cookies {
		t.Run(name, func(t *testing.T) {
			cookie := map[string]string{"Cookie": auth.CookieName + "=" + v, "Sec-Fetch-Site": "same-origin"}
			for _, tc := range []struct{ method, path string }{
				{"GET", "/api/v1/environments"}, {"POST", "/api/v1/sync"}, {"POST", "/environments/pr-3/redeploy"}, {"GET", "/"}, {"POST", "/signout"},
			} {
				resp := f.do(tc.method, tc.path, "", cookie, nil)
				if resp.StatusCode != 401 {
					t.Errorf("%s %s = %d, want 401", tc.method, tc.path, resp.StatusCode)
				}
				if cleared := resp.Cookies(); len(cleared) != 1 || cleared[0].MaxAge >= 0 {
					t.Errorf("%s %s did not clear the cookie: %v", tc.method, tc.path, cleared)
				}
				if tc.path == "/" && !strings.Contains(body(t, resp), `id="signin-form"`) {
					t.Errorf("GET / with a bad cookie is not the sign-in page")
				}
			}
		})
	}
	if r, s := f.counts(); r != 0 || s != 0 {
		t.Errorf("bad cookies redeployed %d times and synced %d", r, s)
	}
	if entries, _ := f.st.Audit(context.Background(), 100, 0); len(entries) != 1 {
		t.Errorf("audit trail has %d entries, want only the sign-in: %+v", len(entries), entries)
	}
	// The good one still works, a demoted token's session is demoted.
	if resp := f.do("POST", "/api/v1/sync", "", map[string]string{"Cookie": auth.CookieName + "=" + good, "Sec-Fetch-Site": "same-origin"}, nil); resp.StatusCode != 202 {
		t.Errorf("good cookie: %d", resp.StatusCode)
	}
	viewerSession := mint(sessionSecret, time.Hour, time.Now(), auth.TokenPrincipal("grafana", auth.Admin))
	if resp := f.do("POST", "/api/v1/sync", "", map[string]string{"Cookie": auth.CookieName + "=" + viewerSession}, nil); resp.StatusCode != 403 {
		t.Errorf("session claiming admin for a viewer token: %d, want 403", resp.StatusCode)
	}
}
