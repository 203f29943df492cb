package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// lifecycle is a fake of the reconciler's lifecycle entry points: it keeps
// what the reconciler would (the sleeping status in the real store; marks,
// expiry, activity and usage in memory, shown through overlay).
type lifecycle struct {
	st       *store.Store
	mu       sync.Mutex
	woken    []string
	kept     map[string]bool
	expires  map[string]time.Time
	activity map[string]time.Time
	usage    map[string]env.Usage
}

func (l *lifecycle) sleep(ctx context.Context, key, actor string) error {
	s := env.StatusSleeping
	return l.st.Set(ctx, key, store.Update{Status: &s})
}

func (l *lifecycle) wake(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.woken = append(l.woken, key)
	l.activity[key] = time.Now()
}

func (l *lifecycle) extend(ctx context.Context, key string, d time.Duration) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kept[key] {
		return time.Time{}, nil
	}
	t := time.Now().Add(d).Truncate(time.Second)
	l.expires[key] = t
	return t, nil
}

func (l *lifecycle) keep(ctx context.Context, key string, on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kept[key] = on
	return nil
}

func (l *lifecycle) wakes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.woken...)
}

// overlay is the real store with the lifecycle's fields filled from l, as
// the store will fill them.
type overlay struct {
	*store.Store
	l *lifecycle
}

func (o overlay) Live(ctx context.Context) ([]env.Environment, error) {
	live, err := o.Store.Live(ctx)
	for i := range live {
		live[i] = o.fill(live[i])
	}
	return live, err
}

func (o overlay) Get(ctx context.Context, key string) (env.Environment, error) {
	e, err := o.Store.Get(ctx, key)
	return o.fill(e), err
}

func (o overlay) fill(e env.Environment) env.Environment {
	o.l.mu.Lock()
	defer o.l.mu.Unlock()
	e.Kept = o.l.kept[e.Key]
	if t, ok := o.l.expires[e.Key]; ok && !e.Kept {
		e.ExpiresAt = &t
	}
	if t, ok := o.l.activity[e.Key]; ok {
		e.LastActivityAt = &t
	}
	if u, ok := o.l.usage[e.Key]; ok {
		e.Usage = &u
	}
	return e
}

var rates = env.Rates{CPUHour: 0.05, GBHour: 0.01, Currency: "USD"}

// newLifecycleFixture is newFixture's server (tokens, sign-in required)
// with production and pr-3, the lifecycle's entry points and rates.
func newLifecycleFixture(t *testing.T, wired bool) (*fixture, *lifecycle) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, src := range []env.Source{
		{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main"},
		{Key: "pr-3", Kind: env.KindPullRequest, Number: 3, Branch: "fix"},
	} {
		if err := st.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
	}
	l := &lifecycle{st: st, kept: map[string]bool{}, expires: map[string]time.Time{}, activity: map[string]time.Time{}, usage: map[string]env.Usage{}}
	f := &fixture{t: t, st: st, log: &syncLog{}}
	o := Options{
		Store: overlay{st, l}, Domain: "preview.test", Rates: rates,
		Auth:   auth.New(auth.Options{Tokens: tokens(), Sessions: auth.NewSessions([]byte(sessionSecret), time.Hour, nil), Revocations: st}),
		Logger: slog.New(slog.NewTextHandler(f.log, nil)),
	}
	if wired {
		o.Sleep, o.Wake, o.Extend, o.Keep = l.sleep, l.wake, l.extend, l.keep
	}
	f.srv = httptest.NewServer(New(o))
	t.Cleanup(f.srv.Close)
	return f, l
}

var form = map[string]string{"Content-Type": "application/x-www-form-urlencoded"}

// TestLifecycleRoles: each lifecycle action, by API and by the
// dashboard's button, is an operator's: 401 without a token, 403 for a
// viewer, 202 (API) or 303 back to the page for operators and admins.
func TestLifecycleRoles(t *testing.T) {
	f, _ := newLifecycleFixture(t, true)
	callers := []struct{ name, token string }{{"none", ""}, {"viewer", viewerToken}, {"operator", operatorToken}, {"admin", adminToken}}
	for _, a := range []string{"sleep", "wake", "extend", "keep", "unkeep"} {
		for _, rt := range []struct {
			path string
			want [4]int
		}{
			{"/api/v1/environments/pr-3/" + a + "?duration=3d", [4]int{401, 403, 202, 202}},
			{"/environments/pr-3/" + a, [4]int{401, 403, 303, 303}},
		} {
			for i, c := range callers {
				resp := f.do("POST", rt.path, c.token, form, strings.NewReader("duration=3d"))
				if resp.StatusCode != rt.want[i] {
					t.Errorf("POST %s as %s = %d, want %d: %s", rt.path, c.name, resp.StatusCode, rt.want[i], body(t, resp))
				}
				if resp.StatusCode == 303 && resp.Header.Get("Location") != "/environments/pr-3" {
					t.Errorf("POST %s redirects to %q", rt.path, resp.Header.Get("Location"))
				}
			}
		}
	}
	// Only the acts that were allowed are in the audit trail: 5 actions
	// x 2 routes x 2 callers.
	entries, err := f.st.Audit(context.Background(), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 20 {
		t.Errorf("audit has %d entries, want 20: %+v", len(entries), entries)
	}
	// A button on the dashboard comes back to the dashboard.
	resp := f.do("POST", "/environments/pr-3/wake", operatorToken, form, strings.NewReader("next=/"))
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/" {
		t.Errorf("wake from the dashboard = %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestLifecycleActions: each action does what it says (seen in GET),
// answers 202 with the key, the action and, for extend, the new expiry, and
// is audited with who did it; bad input, unknown keys and production are
// refused before anything is done or recorded.
func TestLifecycleActions(t *testing.T) {
	f, l := newLifecycleFixture(t, true)
	ctx := context.Background()
	get := func() env.Environment {
		t.Helper()
		var e env.Environment
		if err := json.Unmarshal([]byte(body(t, f.do("GET", "/api/v1/environments/pr-3", viewerToken, nil, nil))), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	act := func(action, token string, r io.Reader) (int, map[string]any) {
		t.Helper()
		resp := f.do("POST", "/api/v1/environments/pr-3/"+action, token, map[string]string{"Content-Type": "application/json"}, r)
		var out map[string]any
		if err := json.Unmarshal([]byte(body(t, resp)), &out); err != nil {
			t.Fatalf("%s answered no JSON: %v", action, err)
		}
		return resp.StatusCode, out
	}

	// Reading is not activity.
	before := get()
	if list := body(t, f.do("GET", "/api/v1/environments", viewerToken, nil, nil)); !strings.Contains(list, `"pr-3"`) {
		t.Fatalf("list: %s", list)
	}
	body(t, f.do("GET", "/", viewerToken, nil, nil))
	body(t, f.do("GET", "/environments/pr-3", viewerToken, nil, nil))
	if after := get(); len(l.wakes()) != 0 || !after.LastActivityAt.Equal(*before.LastActivityAt) || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("reading touched pr-3: wakes %v, %+v", l.wakes(), after)
	}

	if code, out := act("sleep", operatorToken, nil); code != 202 || out["key"] != "pr-3" || out["action"] != "sleep" {
		t.Errorf("sleep = %d %v", code, out)
	}
	if e := get(); e.Status != env.StatusSleeping {
		t.Errorf("after sleep: status %s", e.Status)
	}
	if code, out := act("wake", operatorToken, nil); code != 202 || out["action"] != "wake" || out["note"] != nil {
		t.Errorf("wake = %d %v", code, out)
	}
	if w := l.wakes(); len(w) != 1 || w[0] != "pr-3" {
		t.Errorf("woken = %v", w)
	}
	if e := get(); e.LastActivityAt == nil {
		t.Errorf("wake counted no activity")
	}
	code, out := act("extend", operatorToken, strings.NewReader(`{"duration": "3d"}`))
	exp, _ := time.Parse(time.RFC3339, out["expiresAt"].(string))
	if code != 202 || time.Until(exp) < 71*time.Hour || time.Until(exp) > 73*time.Hour {
		t.Errorf("extend = %d %v; want expiresAt in 3 days", code, out)
	}
	if e := get(); e.ExpiresAt == nil || !e.ExpiresAt.Equal(exp) {
		t.Errorf("after extend: expiresAt %v, want %v", e.ExpiresAt, exp)
	}
	if code, out := act("keep", operatorToken, nil); code != 202 || out["kept"] != true {
		t.Errorf("keep = %d %v", code, out)
	}
	if e := get(); !e.Kept || e.ExpiresAt != nil {
		t.Errorf("after keep: kept %v, expiresAt %v", e.Kept, e.ExpiresAt)
	}
	// Extending a kept preview changes nothing, and says so.
	resp := f.do("POST", "/api/v1/environments/pr-3/extend?duration=12h", adminToken, nil, nil)
	if b := body(t, resp); resp.StatusCode != 202 || !strings.Contains(b, "never expires") || strings.Contains(b, "expiresAt") {
		t.Errorf("extend a kept preview = %d %s", resp.StatusCode, b)
	}
	if code, out := act("unkeep", operatorToken, nil); code != 202 || out["kept"] != false {
		t.Errorf("unkeep = %d %v", code, out)
	}
	if e := get(); e.Kept {
		t.Errorf("kept after unkeep")
	}

	// Refused: nothing done, nothing recorded.
	n := len(l.wakes())
	refused := []struct {
		name, path, body string
		want             int
		says             string
	}{
		{"unknown key", "/api/v1/environments/pr-99/wake", "", 404, "not found: pr-99"},
		{"bad key", "/api/v1/environments/Bad_Key/wake", "", 400, "key"},
		{"production sleep", "/api/v1/environments/production/sleep", "", 409, "production never sleeps or expires"},
		{"production wake", "/api/v1/environments/production/wake", "", 409, "production never sleeps or expires"},
		{"production extend", "/api/v1/environments/production/extend?duration=3d", "", 409, "production"},
		{"production keep", "/api/v1/environments/production/keep", "", 409, "production"},
		{"not a duration", "/api/v1/environments/pr-3/extend?duration=3x", "", 400, `"3x" is not a duration`},
		{"over 30 days", "/api/v1/environments/pr-3/extend", `{"duration":"31d"}`, 400, "more than 30d"},
		{"5 weeks", "/api/v1/environments/pr-3/extend?duration=5w", "", 400, "more than 30d"},
		{"zero", "/api/v1/environments/pr-3/extend?duration=0s", "", 400, "more than nothing"},
		{"negative", "/api/v1/environments/pr-3/extend?duration=-1h", "", 400, "negative"},
		{"no duration", "/api/v1/environments/pr-3/extend", `{}`, 400, "duration missing"},
		{"no body", "/api/v1/environments/pr-3/extend", ``, 400, "duration missing"},
		{"unknown field", "/api/v1/environments/pr-3/extend", `{"dur":"3d"}`, 400, `unknown field "dur"`},
		{"not JSON", "/api/v1/environments/pr-3/extend", `duration=3d`, 400, `the body is not JSON; want {"duration": "3d"}`},
		{"not an object", "/api/v1/environments/pr-3/extend", `"3d"`, 400, `the body is not {"duration": "3d"}`},
		{"a number", "/api/v1/environments/pr-3/extend", `{"duration": 3}`, 400, `the body is not {"duration": "3d"}`},
		{"page: production", "/environments/production/sleep", "", 409, "production never sleeps"},
		{"page: over 30 days", "/environments/pr-3/extend", "duration=60d", 400, "more than 30d"},
	}
	audited := func() int {
		entries, err := f.st.Audit(ctx, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	was := audited()
	for _, tc := range refused {
		resp := f.do("POST", tc.path, operatorToken, form, strings.NewReader(tc.body))
		b := body(t, resp)
		var e struct{ Error string }
		if json.Unmarshal([]byte(b), &e) == nil {
			b = e.Error
		}
		if resp.StatusCode != tc.want || !strings.Contains(b, tc.says) {
			t.Errorf("%s: %d %s; want %d saying %q", tc.name, resp.StatusCode, b, tc.want, tc.says)
		}
	}
	if len(l.wakes()) != n || audited() != was {
		t.Errorf("refused actions were done or recorded")
	}
	if e, err := f.st.Get(ctx, env.ProductionKey); err != nil || e.Status == env.StatusSleeping {
		t.Errorf("production: %+v %v", e, err)
	}

	entries, err := f.st.Audit(ctx, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, e := range entries {
		acts = append([]string{e.Actor + " " + e.Action + " " + e.Key + " " + e.Detail + " " + e.Via}, acts...)
	}
	want := "token:deployer sleep pr-3  api,token:deployer wake pr-3  api,token:deployer extend pr-3 3d api," +
		"token:deployer keep pr-3  api,token:ci extend pr-3 12h api,token:deployer unkeep pr-3  api"
	if got := strings.Join(acts, ","); got != want {
		t.Errorf("audit = %s\nwant %s", got, want)
	}
	// The environment's history says who did it.
	evs, err := f.st.Events(ctx, "pr-3", 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || evs[0].Message != "unkeep by token:deployer (api)" {
		t.Errorf("history: %+v", evs)
	}
}

// TestLifecycleUnwired: without a reconciler the actions answer 503.
func TestLifecycleUnwired(t *testing.T) {
	f, _ := newLifecycleFixture(t, false)
	for _, a := range []string{"sleep", "wake", "extend?duration=1d", "keep", "unkeep"} {
		resp := f.do("POST", "/api/v1/environments/pr-3/"+a, operatorToken, nil, nil)
		if b := body(t, resp); resp.StatusCode != 503 || !strings.Contains(b, "no reconciler") {
			t.Errorf("%s = %d %s, want 503", a, resp.StatusCode, b)
		}
	}
}

// TestLifecycleDashboard: the dashboard and the environment's page show
// the last activity, the expiry, and the priced cost line; sleeping and
// queued stand out; the lifecycle buttons are an operator's, and never on
// production. The API carries the same usage, priced.
func TestLifecycleDashboard(t *testing.T) {
	f, l := newLifecycleFixture(t, true)
	ctx := context.Background()
	now := time.Now()
	ready := env.StatusReady // only a ready preview offers Sleep
	if err := f.st.Set(ctx, "pr-3", store.Update{Status: &ready}); err != nil {
		t.Fatal(err)
	}
	l.activity["pr-3"] = now.Add(-3*time.Minute - 10*time.Second)
	l.expires["pr-3"] = now.Add(48*time.Hour + time.Minute)
	u := env.Usage{RunSeconds: 12000, CPUSeconds: 1440, GBSeconds: 0.18 * 12000, PeakMemoryBytes: 180e6, Since: now.Add(-24 * time.Hour)}
	l.usage["pr-3"], l.usage[env.ProductionKey] = u, u
	line := "ran 3 h 20 m, 0.40 CPU-h, peak 180 MB; about $0.03"
	cost := 0.4*rates.CPUHour + 0.6*rates.GBHour

	// JSON: list and single, priced.
	var list struct {
		Environments []env.Environment `json:"environments"`
	}
	if err := json.Unmarshal([]byte(body(t, f.do("GET", "/api/v1/environments", viewerToken, nil, nil))), &list); err != nil || len(list.Environments) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	for _, e := range list.Environments {
		if e.Usage == nil || math.Abs(e.Usage.Cost-cost) > 1e-9 || e.Usage.Currency != "USD" || e.Usage.RunSeconds != 12000 {
			t.Errorf("%s usage = %+v, want cost %v USD", e.Key, e.Usage, cost)
		}
	}
	var one env.Environment
	if err := json.Unmarshal([]byte(body(t, f.do("GET", "/api/v1/environments/pr-3", viewerToken, nil, nil))), &one); err != nil || one.Usage == nil || math.Abs(one.Usage.Cost-cost) > 1e-9 || one.LastActivityAt == nil || one.ExpiresAt == nil {
		t.Errorf("get: %+v %v", one, err)
	}

	buttons := []string{`action="/environments/pr-3/sleep"`, `action="/environments/pr-3/extend"`, `value="3d"`, `action="/environments/pr-3/keep"`}
	for _, path := range []string{"/", "/environments/pr-3"} {
		page := body(t, f.do("GET", path, viewerToken, nil, nil))
		for _, want := range []string{"3 m ago", "expires in 2 d", line} {
			if !strings.Contains(page, want) {
				t.Errorf("%s for a viewer lacks %q:\n%s", path, want, page)
			}
		}
		if strings.Contains(page, "/environments/pr-3/sleep") || strings.Contains(page, `class="lifecycle"`) {
			t.Errorf("%s shows a viewer lifecycle buttons", path)
		}
		page = body(t, f.do("GET", path, operatorToken, nil, nil))
		for _, want := range buttons {
			if !strings.Contains(page, want) {
				t.Errorf("%s for an operator lacks %s:\n%s", path, want, page)
			}
		}
		if strings.Contains(page, "/environments/pr-3/wake") || strings.Contains(page, "/environments/pr-3/unkeep") {
			t.Errorf("%s offers wake or unkeep to a running, unkept preview", path)
		}
		if strings.Contains(page, "/environments/production/") && !strings.Contains(page, "/environments/production/redeploy") {
			t.Errorf("%s offers production a lifecycle button:\n%s", path, page)
		}
	}
	if page := body(t, f.do("GET", "/environments/production", adminToken, nil, nil)); strings.Contains(page, `class="lifecycle"`) || strings.Contains(page, `id="expiry"`) || !strings.Contains(page, line) {
		t.Errorf("production's page:\n%s", page)
	}
	if page := body(t, f.do("GET", "/", adminToken, nil, nil)); strings.Count(page, `class="lifecycle"`) != 1 {
		t.Errorf("dashboard: want lifecycle buttons on pr-3's row only:\n%s", page)
	}

	// Sleeping: its own badge, and Wake instead of Sleep; kept: "kept"
	// and Unkeep instead of Keep and Extend.
	if err := l.sleep(ctx, "pr-3", "test"); err != nil {
		t.Fatal(err)
	}
	l.keep(ctx, "pr-3", true)
	for _, path := range []string{"/", "/environments/pr-3"} {
		page := body(t, f.do("GET", path, operatorToken, nil, nil))
		for _, want := range []string{`class="badge s-sleeping">sleeping<`, `action="/environments/pr-3/wake"`, `action="/environments/pr-3/unkeep"`, ">kept<"} {
			if !strings.Contains(page, want) {
				t.Errorf("%s for a sleeping kept preview lacks %s:\n%s", path, want, page)
			}
		}
		for _, not := range []string{"/environments/pr-3/sleep", "/environments/pr-3/keep", "/environments/pr-3/extend", "expires in"} {
			if strings.Contains(page, not) {
				t.Errorf("%s for a sleeping kept preview has %s", path, not)
			}
		}
	}
	queued, msg := env.StatusQueued, "queued: 2nd of 3"
	if err := f.st.Set(ctx, "pr-3", store.Update{Status: &queued, Message: &msg}); err != nil {
		t.Fatal(err)
	}
	page := body(t, f.do("GET", "/", viewerToken, nil, nil))
	if !strings.Contains(page, `class="badge s-queued">queued<`) || !strings.Contains(page, msg) {
		t.Errorf("queued preview on the dashboard:\n%s", page)
	}
	for _, css := range []string{".s-sleeping{", ".s-queued{"} {
		if !strings.Contains(page, css) {
			t.Errorf("no style for %s", css)
		}
	}
}

// TestLifecycleFuncs: the words the dashboard uses.
func TestLifecycleFuncs(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	agoTests := map[string]struct {
		t    *time.Time
		want string
	}{
		"never":    {nil, ""},
		"minutes":  {at(-3*time.Minute - 5*time.Second), "3 m ago"},
		"hours":    {at(-3*time.Hour - 20*time.Minute), "3 h 20 m ago"},
		"days":     {at(-50 * time.Hour), "2 d 2 h ago"},
		"skew":     {at(time.Second), "0 s ago"},
		"just now": {at(0), "0 s ago"},
	}
	for name, tt := range agoTests {
		if got := ago(now, tt.t); got != tt.want {
			t.Errorf("ago %s = %q, want %q", name, got, tt.want)
		}
	}
	expiryTests := map[string]struct {
		e    env.Environment
		want string
	}{
		"no ttl":     {env.Environment{Kind: env.KindBranch}, ""},
		"in 2 days":  {env.Environment{Kind: env.KindPullRequest, ExpiresAt: at(48 * time.Hour)}, "expires in 2 d"},
		"in hours":   {env.Environment{Kind: env.KindPullRequest, ExpiresAt: at(5*time.Hour + 30*time.Minute)}, "expires in 5 h 30 m"},
		"past":       {env.Environment{Kind: env.KindPullRequest, ExpiresAt: at(-time.Minute)}, "expires now"},
		"kept":       {env.Environment{Kind: env.KindPullRequest, Kept: true, ExpiresAt: at(time.Hour)}, "kept"},
		"production": {env.Environment{Kind: env.KindProduction, ExpiresAt: at(time.Hour)}, ""},
	}
	for name, tt := range expiryTests {
		if got := expiry(now, tt.e); got != tt.want {
			t.Errorf("expiry %s = %q, want %q", name, got, tt.want)
		}
	}
}
