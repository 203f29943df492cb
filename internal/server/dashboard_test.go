package server

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func TestOrder(t *testing.T) {
	envs := []env.Environment{
		{Key: "production", Kind: env.KindProduction, Status: env.StatusReady},
		{Key: "a", Status: env.StatusReady},
		{Key: "b", Status: env.StatusFailed},
		{Key: "c", Status: env.StatusBuilding},
		{Key: "d", Status: env.StatusFailed},
	}
	order(envs)
	var got []string
	for _, e := range envs {
		got = append(got, e.Key)
	}
	if strings.Join(got, " ") != "b d production a c" {
		t.Errorf("order = %v, want failed first, then production, then the rest", got)
	}
	prodFailed := []env.Environment{{Key: "a", Status: env.StatusFailed}, {Key: "production", Kind: env.KindProduction, Status: env.StatusFailed}}
	order(prodFailed)
	if prodFailed[0].Key != "a" {
		t.Errorf("failed ones keep the store's order: %v", prodFailed)
	}
}

func TestMatches(t *testing.T) {
	e := env.Environment{Key: "pr-12", Branch: "feature/Checkout", Status: env.StatusFailed}
	tests := map[string]struct {
		q    string
		want bool
	}{
		"empty":            {"", true},
		"spaces":           {"   ", true},
		"key":              {"pr-12", true},
		"key part":         {"pr-1", true},
		"branch any case":  {"checkout", true},
		"status":           {"FAILED", true},
		"all words":        {"failed checkout", true},
		"one word misses":  {"failed login", false},
		"other":            {"ready", false},
		"no message match": {"boom", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := matches(e, tt.q); got != tt.want {
				t.Errorf("matches(%q) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestStepElapsed(t *testing.T) {
	tests := map[time.Duration]string{
		-time.Second:                "0 s",
		0:                           "0 s",
		12 * time.Second:            "12 s",
		59999 * time.Millisecond:    "59 s",
		time.Minute:                 "1 m 00 s",
		185 * time.Second:           "3 m 05 s",
		2*time.Hour + 5*time.Minute: "2 h 5 m",
		50 * time.Hour:              "2 d 2 h",
	}
	for d, want := range tests {
		if got := stepElapsed(d); got != want {
			t.Errorf("stepElapsed(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestTimeline(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		ev   env.Event
		want timelineEntry
	}{
		"reconciler": {
			env.Event{Time: at, Reason: "Building", Message: "building abc1234", SHA: "abc1234"},
			timelineEntry{Time: at, What: "Building", Who: "previewd", SHA: "abc1234", Message: "building abc1234"},
		},
		"action": {
			env.Event{Time: at, Reason: store.ReasonAction, Message: "redeploy by token:ci (api)"},
			timelineEntry{Time: at, What: "redeploy", Who: "token:ci", Via: "api"},
		},
		"action with detail": {
			env.Event{Time: at, Reason: store.ReasonAction, Message: "extend by github:alice (dashboard): 3d"},
			timelineEntry{Time: at, What: "extend", Who: "github:alice", Via: "dashboard", Message: "3d"},
		},
		"actor with parentheses": {
			env.Event{Time: at, Reason: store.ReasonAction, Message: "sleep by oidc:a (b) (pr-comment)"},
			timelineEntry{Time: at, What: "sleep", Who: "oidc:a (b)", Via: "pr-comment"},
		},
		"action not in the audit's words": {
			env.Event{Time: at, Reason: store.ReasonAction, Message: "something else"},
			timelineEntry{Time: at, What: store.ReasonAction, Message: "something else"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := timeline([]env.Event{tt.ev})
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("timeline = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDatabaseOf(t *testing.T) {
	tests := map[string]struct {
		e     env.Environment
		items []env.Item
		want  databaseView
	}{
		"sqlite":     {env.Environment{Database: "pr-1.sqlite"}, []env.Item{{Kind: env.ItemWorkDir, Name: "/w"}, {Kind: env.ItemSQLite, Name: "pr-1"}}, databaseView{"SQLite file", "pr-1.sqlite", -1}},
		"schema":     {env.Environment{Database: "preview_pr_1"}, []env.Item{{Kind: env.ItemRole, Name: "r"}, {Kind: env.ItemSchema, Name: "preview_pr_1"}}, databaseView{"PostgreSQL schema", "preview_pr_1", -1}},
		"database":   {env.Environment{}, []env.Item{{Kind: env.ItemDatabase, Name: "preview_pr_1"}}, databaseView{"PostgreSQL database", "preview_pr_1", -1}},
		"production": {env.Environment{Database: "app"}, nil, databaseView{"shared", "app", -1}},
		"none":       {env.Environment{}, []env.Item{{Kind: env.ItemProcess, Name: "12"}}, databaseView{"", "", -1}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := databaseOf(tt.e, tt.items); got != tt.want {
				t.Errorf("databaseOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestContrast checks the palette of the style template against WCAG's
// 4.5:1 for normal text: badge text on its colour, and the muted, link
// and status colours on white and on the header's background.
func TestContrast(t *testing.T) {
	var b strings.Builder
	s := New(Options{})
	if err := s.tmpl.ExecuteTemplate(&b, "style", nil); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"white": "#fff"}
	for _, m := range regexp.MustCompile(`--([a-z]+):(#[0-9a-f]{3,6})`).FindAllStringSubmatch(b.String(), -1) {
		vars[m[1]] = m[2]
	}
	pairs := [][2]string{
		{"white", "ok"}, {"white", "bad"}, {"white", "wait"}, {"white", "busy"}, {"white", "gone"}, {"white", "muted"},
		{"sleep", "white"}, {"wait", "white"}, {"link", "white"}, {"muted", "white"}, {"muted", "bg"}, {"fg", "bg"}, {"bad", "white"},
	}
	for _, p := range pairs {
		fg, bg := vars[p[0]], vars[p[1]]
		if fg == "" || bg == "" {
			t.Errorf("style lacks --%s or --%s", p[0], p[1])
			continue
		}
		if r := contrast(fg, bg); r < 4.5 {
			t.Errorf("%s (%s) on %s (%s): contrast %.2f, want at least 4.5", p[0], fg, p[1], bg, r)
		}
	}
}

func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

func luminance(hex string) float64 {
	hex = strings.TrimPrefix(hex, "#")
	if len(hex) == 3 {
		hex = string([]byte{hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]})
	}
	var l float64
	for i, w := range []float64{0.2126, 0.7152, 0.0722} {
		v, _ := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
		c := float64(v) / 255
		if c <= 0.03928 {
			c /= 12.92
		} else {
			c = math.Pow((c+0.055)/1.055, 2.4)
		}
		l += w * c
	}
	return l
}

// dashboardStore is a store with a few environments in different states.
func dashboardStore(t testing.TB) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, src := range []env.Source{
		{Key: "production", Kind: env.KindProduction, Branch: "main"},
		{Key: "pr-3", Kind: env.KindPullRequest, Number: 3, Branch: "fix"},
		{Key: "pr-4", Kind: env.KindPullRequest, Number: 4, Branch: "feature/checkout"},
		{Key: "docs", Kind: env.KindBranch, Branch: "docs"},
	} {
		if err := st.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
	}
	set := func(key string, status env.Status, sha, msg string) {
		if err := st.Set(ctx, key, store.Update{Status: &status, SHA: &sha, Message: &msg}); err != nil {
			t.Fatal(err)
		}
	}
	set("production", env.StatusReady, "1111111111111111111111111111111111111111", "ready")
	set("pr-3", env.StatusReady, "3333333333333333333333333333333333333333", "ready")
	set("pr-4", env.StatusFailed, "4444444444444444444444444444444444444444", "build of 4444444 failed: exit status 1\nboom")
	set("docs", env.StatusBuilding, "5555555555555555555555555555555555555555", "building 5555555")
	db := "pr-4.sqlite"
	st.Set(ctx, "pr-4", store.Update{Database: &db})
	if err := st.PutItem(ctx, "pr-4", env.Item{Kind: env.ItemSQLite, Name: "pr-4", Data: json.RawMessage(`{"path":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	st.AddEvent(ctx, "pr-4", env.Event{Reason: "Failed", Message: "build of 4444444 failed", SHA: "4444444444444444444444444444444444444444"})
	st.AddAudit(ctx, store.AuditEntry{Actor: "token:ci", Action: "redeploy", Via: "api", Key: "pr-4"})
	return st
}

// TestDashboardRender checks the dashboard's order, the filter without
// JavaScript, the step's elapsed time and that a viewer sees no buttons;
// and the environment page's timeline, database and inventory.
func TestDashboardRender(t *testing.T) {
	st := dashboardStore(t)
	a := auth.New(auth.Options{Tokens: tokens(), Anonymous: auth.None})
	s := New(Options{Store: st, Domain: "preview.test", Auth: a,
		DatabaseSize: func(ctx context.Context, key string) (int64, error) { return 48 << 10, nil }})
	get := func(path, token string) string {
		t.Helper()
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		return w.Body.String()
	}
	page := get("/", operatorToken)
	keys := regexp.MustCompile(`<tr data-key="([^"]+)" data-branch`).FindAllStringSubmatch(page, -1)
	var order []string
	for _, k := range keys {
		order = append(order, k[1])
	}
	if strings.Join(order, " ") != "pr-4 production docs pr-3" {
		t.Errorf("rows %v, want the failed one first, then production, then the rest", order)
	}
	for _, want := range []string{`lang="en"`, `<label for="q">`, `aria-live="polite"`, `class="elapsed" data-since=`, `name="sleep"`, `/static/dashboard.js?v=`, `<noscript><meta http-equiv="refresh"`} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	filtered := get("/?q=feature", viewerToken)
	if n := strings.Count(filtered, "<tr data-key="); n != 1 || !strings.Contains(filtered, `data-key="pr-4"`) || !strings.Contains(filtered, "1 of 4 shown") {
		t.Errorf("?q=feature shows %d rows:\n%s", n, filtered)
	}
	viewer := get("/", viewerToken)
	if strings.Contains(viewer, `method="post"`) || strings.Contains(viewer, "Actions</th>") {
		t.Errorf("a viewer's dashboard has buttons")
	}

	detail := get("/environments/pr-4", operatorToken)
	for _, want := range []string{
		`<td>redeploy</td><td>token:ci <span class="v">(api)</span></td>`,
		`<td>Failed</td><td>previewd</td>`,
		`<dd id="db-kind">SQLite file</dd>`, `<code id="db-name">pr-4.sqlite</code>`, `<dd id="db-size">49 kB</dd>`,
		`<td>sqlite</td><td><code>pr-4</code></td>`,
		`id="redeploy"`, `name="keep"`,
	} {
		if !strings.Contains(detail, want) {
			t.Errorf("environment page lacks %q", want)
		}
	}
	if strings.Contains(detail, `id="down-button"`) {
		t.Errorf("an operator is offered Down")
	}
	if !strings.Contains(get("/environments/pr-4", adminToken), `id="down-button"`) {
		t.Errorf("an admin is not offered Down")
	}
	if v := get("/environments/pr-4", viewerToken); strings.Contains(v, "<button") && !strings.Contains(v, `id="signout"`) {
		t.Errorf("a viewer's environment page has buttons")
	}
}

// TestDashboardGolden renders the dashboard and an environment page of a
// fixed store at a fixed time, times masked, against testdata; -update
// rewrites them.
func TestDashboardGolden(t *testing.T) {
	st := dashboardStore(t)
	s := New(Options{Store: st, Domain: "preview.test", Version: "test"})
	stamps := regexp.MustCompile(`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z|v=[0-9a-f]{12}|>\d+s<|\(\d+s ago\)|\d+ s<|\d+ [smhd] ago`)
	for name, path := range map[string]string{"dashboard.html": "/", "environment.html": "/environments/pr-4"} {
		req := httptest.NewRequest("GET", path, nil)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		got := stamps.ReplaceAllString(w.Body.String(), "TIME")
		file := filepath.Join("testdata", name)
		if *update {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run with -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs from %s (run with -update and look at the diff):\n%s", path, file, got)
		}
	}
}

// TestStaticScript: the script is served, cacheable, as JavaScript.
func TestStaticScript(t *testing.T) {
	s := New(Options{})
	req := httptest.NewRequest("GET", "/static/dashboard.js?v="+s.assets.version, nil)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	body, _ := io.ReadAll(w.Body)
	if w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), "javascript") || !strings.Contains(string(body), "EventSource") {
		t.Errorf("GET /static/dashboard.js: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if w.Header().Get("Cache-Control") == "" {
		t.Errorf("no Cache-Control")
	}
}
