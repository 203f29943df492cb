package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

func TestPreviewKey(t *testing.T) {
	s := New(Options{Domain: "preview.example.com"})
	tests := map[string]struct {
		host string
		key  string
		ok   bool
	}{
		"plain":        {"pr-1.preview.example.com", "pr-1", true},
		"port":         {"pr-1.preview.example.com:8080", "pr-1", true},
		"upper":        {"PR-1.Preview.Example.COM", "pr-1", true},
		"trailing dot": {"pr-1.preview.example.com.", "pr-1", true},
		"domain only":  {"preview.example.com", "", false},
		"nested":       {"a.b.preview.example.com", "", false},
		"other":        {"pr-1.example.org", "", false},
		"suffix trick": {"pr-1.evilpreview.example.com", "", false},
		"ip":           {"127.0.0.1:8080", "", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			key, ok := s.previewKey(tt.host)
			if key != tt.key || ok != tt.ok {
				t.Errorf("previewKey(%q) = %q, %v; want %q, %v", tt.host, key, ok, tt.key, tt.ok)
			}
		})
	}
}

func TestAPI(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, src := range []env.Source{
		{Key: "production", Kind: env.KindProduction, Branch: "main"},
		{Key: "pr-3", Kind: env.KindPullRequest, Number: 3, Branch: "fix"},
		{Key: "gone", Kind: env.KindBranch, Branch: "gone"},
	} {
		if err := st.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
	}
	ready, sha := env.StatusReady, "0123456789abcdef0123456789abcdef01234567"
	st.Set(ctx, "pr-3", store.Update{Status: &ready, SHA: &sha})
	st.AddEvent(ctx, "pr-3", env.Event{Reason: "Ready", Message: "ready in 80ms", SHA: sha})
	st.Set(ctx, "gone", store.Update{Deleted: true})
	var redeployed []string
	synced := 0
	s := New(Options{Store: st, Domain: "preview.test", Redeploy: func(k string) { redeployed = append(redeployed, k) }, Resync: func() { synced++ }})

	do := func(method, path, host string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		if host != "" {
			req.Host = host
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w
	}
	w := do("GET", "/api/v1/environments", "")
	var list struct {
		Environments []map[string]any `json:"environments"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 {
		t.Fatalf("list: %d %v %s", w.Code, err, w.Body)
	}
	if len(list.Environments) != 2 || list.Environments[0]["key"] != "production" || list.Environments[1]["number"] != float64(3) {
		t.Errorf("list = %v", list.Environments)
	}
	for _, field := range []string{"key", "kind", "branch", "sha", "status", "message", "url", "createdAt", "updatedAt"} {
		if _, ok := list.Environments[1][field]; !ok {
			t.Errorf("environment lacks %q", field)
		}
	}
	w = do("GET", "/api/v1/environments/pr-3", "")
	var one env.Environment
	json.Unmarshal(w.Body.Bytes(), &one)
	if w.Code != 200 || one.Status != env.StatusReady || len(one.Events) != 1 || one.Events[0].Message != "ready in 80ms" {
		t.Errorf("get: %d %+v", w.Code, one)
	}
	if w := do("GET", "/api/v1/environments/nope", ""); w.Code != 404 {
		t.Errorf("unknown key: %d", w.Code)
	}
	if w := do("GET", "/api/v1/environments/Bad_Key", ""); w.Code != 400 {
		t.Errorf("bad key: %d", w.Code)
	}
	if w := do("POST", "/api/v1/sync", ""); w.Code != 202 || synced != 1 {
		t.Errorf("sync: %d, synced %d", w.Code, synced)
	}
	// A redeploy is the reconciler's to do: the server writes nothing.
	before, _ := st.Get(ctx, "pr-3")
	if w := do("POST", "/api/v1/environments/pr-3/redeploy", ""); w.Code != 202 || len(redeployed) != 1 || redeployed[0] != "pr-3" {
		t.Errorf("redeploy: %d %v", w.Code, redeployed)
	}
	if after, _ := st.Get(ctx, "pr-3"); !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("redeploy wrote the store")
	}
	if w := do("POST", "/api/v1/environments/nope/redeploy", ""); w.Code != 404 || len(redeployed) != 1 {
		t.Errorf("redeploy of an unknown key: %d %v", w.Code, redeployed)
	}
	// The proxy: an unknown key gets 404 listing the live environments; a
	// known one that is not serving gets 503.
	w = do("GET", "/", "nope.preview.test:8080")
	if w.Code != 404 || !strings.Contains(w.Body.String(), "pr-3") || strings.Contains(w.Body.String(), ">gone<") {
		t.Errorf("unknown preview host: %d %s", w.Code, w.Body)
	}
	if w := do("GET", "/", "pr-3.preview.test"); w.Code != 503 {
		t.Errorf("known but not routed: %d", w.Code)
	}
	if w := do("GET", "/", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `data-key="pr-3"`) {
		t.Errorf("dashboard: %d", w.Code)
	}
}

// logs is a runtime.Logs that has output for one key only.
type logs struct{ key, out string }

func (l logs) Logs(ctx context.Context, key string, n int) (string, error) {
	if key != l.key {
		return "", fmt.Errorf("%w: %s has not run here", runtime.ErrNoLogs, key)
	}
	return l.out, nil
}

type readiness struct{ err error }

func (r readiness) Ready(ctx context.Context) error { return r.err }

// TestLogsAndReadiness: logs come from the runtime's optional Logs; a
// runtime without any (Kubernetes without pod logs) answers 404 with the
// reason instead of another runtime's output. /readyz asks the runtime.
func TestLogsAndReadiness(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, k := range []string{"pr-1", "pr-2"} {
		if err := st.Upsert(ctx, env.Source{Key: k, Kind: env.KindBranch, Branch: k}); err != nil {
			t.Fatal(err)
		}
	}
	do := func(s *Server, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}
	none := New(Options{Store: st})
	if w := do(none, "/api/v1/environments/pr-1/logs"); w.Code != 404 || !strings.Contains(w.Body.String(), "keeps no logs") {
		t.Errorf("logs without a Logs runtime: %d %s", w.Code, w.Body)
	}
	if w := do(none, "/readyz"); w.Code != 200 {
		t.Errorf("readyz without Readiness: %d", w.Code)
	}
	s := New(Options{Store: st, Logs: logs{"pr-1", "==> run\nhello\n"}, Readiness: readiness{errors.New("api server down")}})
	if w := do(s, "/api/v1/environments/pr-1/logs"); w.Code != 200 || w.Body.String() != "==> run\nhello\n" {
		t.Errorf("logs: %d %q", w.Code, w.Body)
	}
	if w := do(s, "/api/v1/environments/pr-2/logs"); w.Code != 404 || !strings.Contains(w.Body.String(), "has not run here") {
		t.Errorf("logs with none to show: %d %s", w.Code, w.Body)
	}
	if w := do(s, "/api/v1/environments/pr-9/logs"); w.Code != 404 {
		t.Errorf("logs of an unknown key: %d", w.Code)
	}
	if w := do(s, "/environments/pr-2"); w.Code != 200 {
		t.Errorf("environment page without logs: %d", w.Code)
	}
	if w := do(s, "/readyz"); w.Code != 503 || !strings.Contains(w.Body.String(), "api server down") {
		t.Errorf("readyz: %d %s", w.Code, w.Body)
	}
}

// router serves the keys it holds, with their name.
type router map[string]bool

func (r router) Proxy(key string) (http.Handler, bool) {
	if !r[key] {
		return nil, false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "served by "+key+" for "+req.Host)
	}), true
}

// TestPreviewRouter: a preview host the Router serves is handed to it;
// one it does not serve gets 503 when the environment is known and 404
// when not.
func TestPreviewRouter(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, key := range []string{"up", "building"} {
		if err := st.Upsert(ctx, env.Source{Key: key, Kind: env.KindBranch, Branch: key}); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Options{Store: st, Domain: "preview.test", Router: router{"up": true}})
	tests := map[string]struct {
		host string
		code int
		body string
	}{
		"served":      {"up.preview.test:8080", http.StatusOK, "served by up for up.preview.test:8080"},
		"not serving": {"building.preview.test", http.StatusServiceUnavailable, "building"},
		"unknown":     {"nope.preview.test", http.StatusNotFound, "nope"},
		"invalid key": {"UP_.preview.test", http.StatusNotFound, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/x", nil)
			req.Host = tt.host
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.body) {
				t.Errorf("%s answered %d %q, want %d with %q", tt.host, w.Code, w.Body, tt.code, tt.body)
			}
		})
	}
}
