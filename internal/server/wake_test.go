package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// wakeStore is the store as the preview proxy reads it: environments by
// key. The rest of Store is not used on the preview path.
type wakeStore struct {
	Store
	mu   sync.Mutex
	envs map[string]env.Environment
}

func (s *wakeStore) Get(ctx context.Context, key string) (env.Environment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.envs[key]
	if !ok {
		return env.Environment{}, store.ErrNotFound
	}
	return e, nil
}

func (s *wakeStore) Live(ctx context.Context) ([]env.Environment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []env.Environment
	for _, e := range s.envs {
		if e.DeletedAt == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *wakeStore) set(key string, status env.Status, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envs[key]
	e.Key, e.Kind, e.Status, e.Message = key, env.KindBranch, status, msg
	s.envs[key] = e
}

// wakeRouter serves the keys it is told to through a real backend.
type wakeRouter struct {
	mu      sync.Mutex
	serving map[string]bool
	to      *url.URL
}

func (r *wakeRouter) Proxy(key string) (http.Handler, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.serving[key] {
		return nil, false
	}
	return httputil.NewSingleHostReverseProxy(r.to), true
}

func (r *wakeRouter) serve(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serving[key] = true
}

// wakeFixture is the real server in front of a real backend, with a
// store and a router of its own, and records of the calls to Wake and
// Touch. woken receives each key Wake is called with.
type wakeFixture struct {
	t      *testing.T
	st     *wakeStore
	rt     *wakeRouter
	srv    *httptest.Server
	woken  chan string
	mu     sync.Mutex
	wakes  []string
	touchs []string
}

func newWakeFixture(t *testing.T, o Options) *wakeFixture {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app "+r.URL.Path)
	}))
	t.Cleanup(backend.Close)
	to, _ := url.Parse(backend.URL)
	f := &wakeFixture{t: t, st: &wakeStore{envs: map[string]env.Environment{}}, rt: &wakeRouter{serving: map[string]bool{}, to: to}, woken: make(chan string, 16)}
	o.Store, o.Router, o.Domain = f.st, f.rt, "preview.test"
	o.Wake = func(key string) {
		f.mu.Lock()
		f.wakes = append(f.wakes, key)
		f.mu.Unlock()
		f.woken <- key
	}
	o.Touch = func(key string) {
		f.mu.Lock()
		f.touchs = append(f.touchs, key)
		f.mu.Unlock()
	}
	f.srv = httptest.NewServer(New(o))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *wakeFixture) calls() (wakes, touches []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.wakes...), append([]string(nil), f.touchs...)
}

type answer struct {
	code   int
	header http.Header
	body   string
	took   time.Duration
	err    error
}

// get sends GET path to key's preview host in the background; a browser
// request says it accepts HTML.
func (f *wakeFixture) get(key, path string, browser bool, header map[string]string) <-chan answer {
	out := make(chan answer, 1)
	req, err := http.NewRequest("GET", f.srv.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Host = key + ".preview.test"
	if browser {
		req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	go func() {
		t0 := time.Now()
		resp, err := noRedirect.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- answer{code: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(t0), err: err}
	}()
	return out
}

func wait(t *testing.T, c <-chan answer) answer {
	t.Helper()
	select {
	case a := <-c:
		if a.err != nil {
			t.Fatal(a.err)
		}
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("no answer within 30s")
	}
	return answer{}
}

func (f *wakeFixture) wokenKey() string {
	f.t.Helper()
	select {
	case k := <-f.woken:
		return k
	case <-time.After(30 * time.Second):
		f.t.Fatal("Wake was not called")
	}
	return ""
}

// notYet fails if c has been answered already.
func notYet(t *testing.T, c <-chan answer, what string) {
	t.Helper()
	select {
	case a := <-c:
		t.Fatalf("%s was answered before the preview served: %d %q", what, a.code, a.body)
	default:
	}
}

// TestWakeOnRequest: a request for a sleeping preview wakes it and is
// held until the Router serves the key, then answered by the app; a
// second request that arrives while it starts is held too and wakes
// nothing more; both are activity, when held and when served.
func TestWakeOnRequest(t *testing.T) {
	f := newWakeFixture(t, Options{})
	f.st.set("pr-3", env.StatusSleeping, "sleeping since 10:00")
	first := f.get("pr-3", "/notes", false, nil)
	if k := f.wokenKey(); k != "pr-3" {
		t.Fatalf("woke %q, want pr-3", k)
	}
	f.st.set("pr-3", env.StatusStarting, "starting abc1234")
	second := f.get("pr-3", "/style.css", false, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, touches := f.calls(); len(touches) == 2 {
			break
		}
		if time.Now().After(deadline) {
			_, touches := f.calls()
			t.Fatalf("touches %v while waking, want pr-3 twice", touches)
		}
		time.Sleep(5 * time.Millisecond)
	}
	notYet(t, first, "the first request")
	notYet(t, second, "the second request")
	f.rt.serve("pr-3")
	for _, c := range []struct {
		a    <-chan answer
		want string
	}{{first, "app /notes"}, {second, "app /style.css"}} {
		a := wait(t, c.a)
		if a.code != http.StatusOK || a.body != c.want {
			t.Errorf("held request answered %d %q, want 200 %q from the app", a.code, a.body, c.want)
		}
	}
	if wakes, _ := f.calls(); len(wakes) != 1 {
		t.Errorf("Wake called %v, want once", wakes)
	}
	// Served is activity too: a wake longer than sleepAfter does not
	// leave the preview idle the moment it answers.
	if _, touches := f.calls(); len(touches) != 4 {
		t.Errorf("touches %v, want pr-3 twice while waking and twice when served", touches)
	}
}

// TestWakingPage: a browser still waiting after a second gets the waking
// page (not before 900 ms, well before the wake timeout), with the status
// and message; an API client goes on waiting and is answered by the app
// once it serves.
func TestWakingPage(t *testing.T) {
	f := newWakeFixture(t, Options{WakeTimeout: time.Minute})
	f.st.set("pr-3", env.StatusSleeping, "")
	api := f.get("pr-3", "/api/notes", false, nil)
	f.wokenKey()
	f.st.set("pr-3", env.StatusQueued, "queued: 2nd of 3")
	browser := f.get("pr-3", "/", true, nil)
	page := wait(t, browser)
	// The upper bound tells the page from the wake timeout's answer, with
	// room for a loaded machine: not a measure of how soon it comes.
	if page.took < 900*time.Millisecond || page.took > 30*time.Second {
		t.Errorf("the waking page came after %s, want about 1s (wake timeout 1m)", page.took)
	}
	if page.code != http.StatusServiceUnavailable || page.header.Get("Retry-After") == "" || page.header.Get("Cache-Control") != "no-store" ||
		!strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Errorf("waking page: %d %v", page.code, page.header)
	}
	for _, want := range []string{`<meta http-equiv="refresh" content="2">`, "pr-3 is waking up", "queued: 2nd of 3", `<html lang="en">`, "<title>", `role="status"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("waking page lacks %q:\n%s", want, page.body)
		}
	}
	if strings.Contains(page.body, "<script") {
		t.Error("the waking page needs JavaScript")
	}
	notYet(t, api, "the API client")
	f.rt.serve("pr-3")
	if a := wait(t, api); a.code != http.StatusOK || a.body != "app /api/notes" {
		t.Errorf("the API client got %d %q, want the app's answer", a.code, a.body)
	}
	// Once it serves, a browser gets the app at once.
	if a := wait(t, f.get("pr-3", "/", true, nil)); a.code != http.StatusOK || a.body != "app /" {
		t.Errorf("the browser after the wake got %d %q", a.code, a.body)
	}
}

// TestWakeTimeout: a preview that does not wake within WakeTimeout gets
// 503 with Retry-After and a one-line message.
func TestWakeTimeout(t *testing.T) {
	f := newWakeFixture(t, Options{WakeTimeout: 200 * time.Millisecond})
	f.st.set("pr-3", env.StatusSleeping, "")
	a := wait(t, f.get("pr-3", "/", false, nil))
	if a.code != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || a.took < 200*time.Millisecond {
		t.Errorf("after the wake timeout: %d %v after %s", a.code, a.header, a.took)
	}
	if lines := strings.Count(strings.TrimSpace(a.body), "\n"); lines != 0 || !strings.Contains(a.body, "pr-3 is not awake after 200ms") {
		t.Errorf("timeout message %q, want one line", a.body)
	}
}

// TestWakeFailed: a preview that fails while it wakes answers the held
// requests at once with its message, log tail included: text for an API
// client, a page that does not reload for a browser.
func TestWakeFailed(t *testing.T) {
	f := newWakeFixture(t, Options{WakeTimeout: time.Minute})
	f.st.set("pr-3", env.StatusSleeping, "")
	api := f.get("pr-3", "/", false, nil)
	f.wokenKey()
	browser := f.get("pr-3", "/", true, nil)
	f.st.set("pr-3", env.StatusFailed, "start failed: not healthy after 20s\npanic: no database")
	a := wait(t, api)
	if a.code != http.StatusBadGateway || !strings.Contains(a.body, "panic: no database") || a.took > 10*time.Second {
		t.Errorf("API client after a failed wake: %d %q after %s", a.code, a.body, a.took)
	}
	p := wait(t, browser)
	if p.code != http.StatusBadGateway || !strings.Contains(p.body, "panic: no database") || strings.Contains(p.body, "http-equiv") {
		t.Errorf("browser after a failed wake: %d %s", p.code, p.body)
	}
}

// TestWakeNeedsAccess: a request refused by previews.access wakes
// nothing and is not activity; one with the password wakes the preview.
func TestWakeNeedsAccess(t *testing.T) {
	pv := auth.NewPreviews(auth.PreviewOptions{Access: auth.PreviewPassword, Password: previewPassword, Secret: []byte(sessionSecret)})
	f := newWakeFixture(t, Options{Previews: pv, WakeTimeout: 100 * time.Millisecond})
	f.st.set("pr-3", env.StatusSleeping, "")
	for _, browser := range []bool{false, true} {
		if a := wait(t, f.get("pr-3", "/", browser, nil)); a.code != http.StatusUnauthorized {
			t.Errorf("no credentials (browser %v): %d, want 401", browser, a.code)
		}
	}
	if wakes, touches := f.calls(); len(wakes) != 0 || len(touches) != 0 {
		t.Errorf("an unauthorised request called Wake %v and Touch %v", wakes, touches)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.SetBasicAuth("", previewPassword)
	wait(t, f.get("pr-3", "/", false, map[string]string{"Authorization": req.Header.Get("Authorization")}))
	if wakes, _ := f.calls(); len(wakes) != 1 {
		t.Errorf("with the password: Wake %v, want pr-3", wakes)
	}
}

// TestTouchAndNoWake: every request a serving key gets is activity; keys
// that are unknown, removed or not asleep wake nothing and are answered
// as without waking.
func TestTouchAndNoWake(t *testing.T) {
	f := newWakeFixture(t, Options{})
	f.st.set("up", env.StatusReady, "")
	f.rt.serve("up")
	f.st.set("building", env.StatusBuilding, "building abc1234")
	f.st.set("gone", env.StatusSleeping, "")
	f.st.mu.Lock()
	e := f.st.envs["gone"]
	e.DeletedAt = new(time.Time)
	f.st.envs["gone"] = e
	f.st.mu.Unlock()
	for i := 0; i < 3; i++ {
		if a := wait(t, f.get("up", "/", false, nil)); a.code != http.StatusOK {
			t.Fatalf("serving key: %d", a.code)
		}
	}
	if a := wait(t, f.get("nope", "/", false, nil)); a.code != http.StatusNotFound {
		t.Errorf("unknown key: %d, want 404", a.code)
	}
	if a := wait(t, f.get("gone", "/", false, nil)); a.code != http.StatusNotFound {
		t.Errorf("removed key: %d, want 404", a.code)
	}
	if a := wait(t, f.get("building", "/", false, nil)); a.code != http.StatusServiceUnavailable || a.took > 10*time.Second {
		t.Errorf("building key: %d after %s, want 503 at once", a.code, a.took)
	}
	wakes, touches := f.calls()
	if len(wakes) != 0 {
		t.Errorf("Wake %v, want none", wakes)
	}
	if len(touches) != 3 || touches[0] != "up" {
		t.Errorf("Touch %v, want up three times", touches)
	}
}

// TestNoWakeWithoutWake: without Options.Wake a sleeping preview gets 503
// at once, as before lifecycle.
func TestNoWakeWithoutWake(t *testing.T) {
	st := &wakeStore{envs: map[string]env.Environment{}}
	st.set("pr-3", env.StatusSleeping, "")
	s := New(Options{Store: st, Router: &wakeRouter{serving: map[string]bool{}}, Domain: "preview.test"})
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "pr-3.preview.test"
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("sleeping without Wake: %d, want 503", w.Code)
	}
}

func TestDecideWake(t *testing.T) {
	gone := time.Now()
	tests := map[string]struct {
		e             env.Environment
		found, waking bool
		want          wakeAction
	}{
		"unknown":                   {found: false, want: wakeNone},
		"removed":                   {e: env.Environment{Status: env.StatusSleeping, DeletedAt: &gone}, found: true, want: wakeNone},
		"sleeping":                  {e: env.Environment{Status: env.StatusSleeping}, found: true, want: wakeStart},
		"queued":                    {e: env.Environment{Status: env.StatusQueued}, found: true, want: wakeStart},
		"sleeping, woken already":   {e: env.Environment{Status: env.StatusSleeping}, found: true, waking: true, want: wakeStart},
		"starting after a wake":     {e: env.Environment{Status: env.StatusStarting}, found: true, waking: true, want: wakeHold},
		"pending after a wake":      {e: env.Environment{Status: env.StatusPending}, found: true, waking: true, want: wakeHold},
		"ready, not yet routed":     {e: env.Environment{Status: env.StatusReady}, found: true, waking: true, want: wakeHold},
		"building, no wake":         {e: env.Environment{Status: env.StatusBuilding}, found: true, want: wakeNone},
		"failed after a wake":       {e: env.Environment{Status: env.StatusFailed}, found: true, waking: true, want: wakeFail},
		"failed, no wake":           {e: env.Environment{Status: env.StatusFailed}, found: true, want: wakeNone},
		"deleting after a wake":     {e: env.Environment{Status: env.StatusDeleting}, found: true, waking: true, want: wakeNone},
		"ready without a wake":      {e: env.Environment{Status: env.StatusReady}, found: true, want: wakeNone},
		"migrating after a wake":    {e: env.Environment{Status: env.StatusMigrating}, found: true, waking: true, want: wakeHold},
		"building after a wake":     {e: env.Environment{Status: env.StatusBuilding}, found: true, waking: true, want: wakeHold},
		"queued while being woken":  {e: env.Environment{Status: env.StatusQueued}, found: true, waking: true, want: wakeStart},
		"unknown but marked waking": {found: false, waking: true, want: wakeNone},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := decideWake(tt.e, tt.found, tt.waking); got != tt.want {
				t.Errorf("decideWake = %d, want %d", got, tt.want)
			}
		})
	}
}
