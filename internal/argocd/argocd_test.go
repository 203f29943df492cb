package argocd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// argoClient calls a plugin generator the way Argo CD's ApplicationSet
// controller does (applicationset/services/plugin and its internal HTTP
// client, v3): it trims the token it read from its Secret, POSTs
// {"applicationSetName", "input": {"parameters"}} JSON-encoded without
// HTML escaping to <baseUrl>/api/v1/getparams.execute with a bearer token,
// treats every status outside 2xx as an error (its message from "message"
// or "error"), and decodes output.parameters as a list of maps. Then, as
// PluginGenerator does for a goTemplate ApplicationSet, each parameter set
// gets a "generator" key holding the input.
type argoClient struct {
	baseURL, token, appSet string
}

func (c argoClient) list(input map[string]any) ([]map[string]any, error) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	req := map[string]any{"applicationSetName": c.appSet, "input": map[string]any{"parameters": input}}
	if err := enc.Encode(req); err != nil {
		return nil, err
	}
	base := c.baseURL
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	hr, err := http.NewRequest(http.MethodPost, base+"api/v1/getparams.execute", &body)
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	if tok := strings.TrimSpace(c.token); tok != "" {
		hr.Header.Set("Authorization", "Bearer "+tok)
	}
	hr.Header.Set("User-Agent", "argocd-applicationset")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var raw map[string]any
		if json.Unmarshal(data, &raw) != nil {
			return nil, fmt.Errorf("API error with status code %d: %s", resp.StatusCode, data)
		}
		msg, _ := raw["message"].(string)
		if msg == "" {
			msg, _ = raw["error"].(string)
		}
		return nil, &apiError{status: resp.StatusCode, msg: msg}
	}
	var out struct {
		Output struct {
			Parameters []map[string]any `json:"parameters"`
		} `json:"output"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%w: %s", err, data)
	}
	res := []map[string]any{}
	for _, p := range out.Output.Parameters {
		p["generator"] = map[string]any{"input": map[string]any{"parameters": input}}
		res = append(res, p)
	}
	return res, nil
}

type apiError struct {
	status int
	msg    string
}

// status is the HTTP status of an API error, or 0.
func status(err error) int {
	var e *apiError
	if errors.As(err, &e) {
		return e.status
	}
	return 0
}

func (e *apiError) Error() string {
	return fmt.Sprintf("API error with status code %d: %s", e.status, e.msg)
}

const (
	shaA = "0123456789abcdef0123456789abcdef01234567"
	shaB = "89abcdef0123456789abcdef0123456789abcdef"
	shaC = "fedcba9876543210fedcba9876543210fedcba98"
)

// describe is what the daemon's describe does for the reference config
// (deploy/argocd/README.md): namespace preview-<key>, image at the SHA.
func describe(e env.Environment) (Params, error) {
	ns := "preview-" + e.Key
	if e.Production() {
		ns = "markdown-editor"
	}
	return Params{Namespace: ns, Host: e.Key + ".preview.example.com", Image: "ghcr.io/acme/markdown-editor:" + e.SHA, Secret: "previewd-env"}, nil
}

type fixture struct {
	t      *testing.T
	ctx    context.Context
	st     *store.Store
	synced atomic.Bool
	srv    *httptest.Server
}

func newFixture(t *testing.T, token string) *fixture {
	f := &fixture{t: t, ctx: context.Background()}
	st, err := store.Open(f.ctx, filepath.Join(t.TempDir(), "previewd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.st = st
	f.synced.Store(true)
	f.srv = httptest.NewServer(New(Options{Token: token, Store: st, Describe: describe, Synced: f.synced.Load}))
	t.Cleanup(f.srv.Close)
	return f
}

// source upserts src and sets its state, as the reconciler does.
func (f *fixture) set(src env.Source, status env.Status, deployed bool) {
	f.t.Helper()
	if err := f.st.Upsert(f.ctx, src); err != nil {
		f.t.Fatal(err)
	}
	url := "https://" + src.Key + ".preview.example.com"
	db := "preview_" + strings.ReplaceAll(src.Key, "-", "_")
	u := store.Update{SHA: &src.SHA, Status: &status, URL: &url, Database: &db}
	if deployed {
		u.Ready, u.Deployed = true, &src
	}
	if err := f.st.Set(f.ctx, src.Key, u); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) client(token string) argoClient {
	return argoClient{baseURL: f.srv.URL, token: token, appSet: "markdown-editor-previews"}
}

// listed returns key -> sha of what Argo CD would get.
func (f *fixture) listed(input map[string]any) map[string]string {
	f.t.Helper()
	ps, err := f.client("t0ken").list(input)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range ps {
		sha := p["sha"].(string)
		if p["image"] != "ghcr.io/acme/markdown-editor:"+sha || p["short_sha"] != sha[:7] {
			f.t.Errorf("%s: image %v, short_sha %v, not those of sha %s", p["key"], p["image"], p["short_sha"], sha)
		}
		out[p["key"].(string)] = sha
	}
	return out
}

func TestPluginGenerator(t *testing.T) {
	f := newFixture(t, "t0ken")
	f.set(env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "feature/Login", SHA: shaA}, env.StatusReady, true)
	f.set(env.Source{Key: "pr-8", Kind: env.KindPullRequest, Number: 8, Branch: "wip", SHA: shaB}, env.StatusMigrating, false)
	f.set(env.Source{Key: "production", Kind: env.KindProduction, Branch: "main", SHA: shaC}, env.StatusReady, true)

	for name, token := range map[string]string{"none": "", "wrong": "nope!", "same length": "t0keN"} {
		_, err := f.client(token).list(nil)
		if status(err) != http.StatusUnauthorized {
			t.Errorf("token %s: %v; want a 401", name, err)
		}
	}
	resp, err := http.Post(f.srv.URL+Path, "application/json", strings.NewReader("{"))
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token, bad body: %v %v; want 401 before the body is read", resp.StatusCode, err)
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+Path, strings.NewReader("{"))
	req.Header.Set("Authorization", "Bearer t0ken")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad body: %v %v; want 400", resp, err)
	}

	got, err := f.client("t0ken").list(map[string]any{"includeProduction": false})
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{{
		"key": "pr-7", "kind": "pull_request", "number": "7", "branch": "feature/Login", "branch_slug": "feature-login",
		"sha": shaA, "short_sha": "0123456",
		"namespace": "preview-pr-7", "url": "https://pr-7.preview.example.com", "host": "pr-7.preview.example.com",
		"image":    "ghcr.io/acme/markdown-editor:" + shaA,
		"database": "preview_pr_7", "secret": "previewd-env", "production": "false",
		"generator": map[string]any{"input": map[string]any{"parameters": map[string]any{"includeProduction": false}}},
	}}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("parameters:\n got %s\nwant %s", gj, wj)
	}

	// Asking for production includes it, as a bool or a string.
	for _, v := range []any{true, "true"} {
		if l := f.listed(map[string]any{"includeProduction": v}); l["production"] != shaC {
			t.Errorf("includeProduction %#v: %v", v, l)
		}
	}

	// An empty list is [], not null.
	empty := httptest.NewServer(New(Options{Token: "t0ken", Store: emptyStore{}}))
	defer empty.Close()
	req, _ = http.NewRequest(http.MethodPost, empty.URL+Path, nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"parameters":[]`) {
		t.Errorf("empty answer = %s", body)
	}
}

// TestTokenTrimmed: a token read from a file or a Secret often ends in a
// newline. Argo CD trims its side; previewd trims its own, and accepts the
// scheme in any case.
func TestTokenTrimmed(t *testing.T) {
	f := newFixture(t, "t0ken\n")
	f.set(env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "x", SHA: shaA}, env.StatusReady, true)
	for _, tok := range []string{"t0ken", "t0ken\n", " t0ken \r\n"} {
		if _, err := f.client(tok).list(nil); err != nil {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+Path, nil)
	req.Header.Set("Authorization", "bearer t0ken")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case scheme: %v %v", resp, err)
	}
	// A blank token configures nothing: every request is refused.
	blank := httptest.NewServer(New(Options{Token: " \n", Store: emptyStore{}}))
	defer blank.Close()
	if _, err := (argoClient{baseURL: blank.URL, token: "\n"}).list(nil); err == nil {
		t.Error("a blank token let a request in")
	}
}

// TestNeverDropsALiveEnvironment walks one pull request through a push,
// the waits of its new commit, a failure and a fix: Argo CD must be told
// to keep deploying the SHA last deployed the whole time, or it deletes
// the Application and every object in the preview.
func TestNeverDropsALiveEnvironment(t *testing.T) {
	f := newFixture(t, "t0ken")
	pr := func(sha, hold string) env.Source {
		return env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "feature", SHA: sha, Hold: hold}
	}
	// Not deployed yet: nothing to list.
	for _, s := range []env.Status{env.StatusPending, env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusFailed} {
		f.set(pr(shaA, ""), s, false)
		if l := f.listed(nil); len(l) != 0 {
			t.Fatalf("never deployed, %s: listed %v", s, l)
		}
	}
	f.set(pr(shaA, ""), env.StatusReady, true)
	if l := f.listed(nil); l["pr-7"] != shaA {
		t.Fatalf("ready at A: %v", l)
	}
	steps := []struct {
		name   string
		status env.Status
		hold   string
	}{
		{"pushed B, pending", env.StatusPending, ""},
		{"B waits for checks", env.StatusPending, "waiting for checks"},
		{"B building", env.StatusBuilding, ""},
		{"B migrating", env.StatusMigrating, ""},
		{"B waiting for its image", env.StatusStarting, ""},
		{"B failed", env.StatusFailed, ""},
	}
	for _, s := range steps {
		f.set(pr(shaB, s.hold), s.status, false)
		if l := f.listed(nil); l["pr-7"] != shaA {
			t.Errorf("%s: listed %v; want pr-7 kept at A", s.name, l)
		}
	}
	f.set(pr(shaC, ""), env.StatusReady, true)
	if l := f.listed(nil); l["pr-7"] != shaC {
		t.Errorf("C ready: %v", l)
	}

	// Being deleted (the pull request closed): no longer listed, so Argo
	// CD deletes the Application before previewd deletes the namespace.
	st := env.StatusDeleting
	if err := f.st.Set(f.ctx, "pr-7", store.Update{Status: &st}); err != nil {
		t.Fatal(err)
	}
	if l := f.listed(nil); len(l) != 0 {
		t.Errorf("deleting: listed %v", l)
	}
	// Removed, then reopened: the SHA deployed in its earlier life is not
	// live any more.
	if err := f.st.Set(f.ctx, "pr-7", store.Update{Deleted: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the store's clock has millisecond steps
	f.set(pr(shaC, ""), env.StatusBuilding, false)
	if l := f.listed(nil); len(l) != 0 {
		t.Errorf("reopened, building: listed %v", l)
	}
}

// TestUnsyncedRefuses: after a start (say with an empty data dir) the
// store does not know every environment until the first full reconcile.
// An empty or partial list would make Argo CD delete the others, so the
// endpoint answers 503, which Argo CD's client reports as an error, and
// the ApplicationSet keeps its Applications.
func TestUnsyncedRefuses(t *testing.T) {
	f := newFixture(t, "t0ken")
	f.synced.Store(false)
	_, err := f.client("t0ken").list(nil)
	if status(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "first reconcile") {
		t.Fatalf("before the first reconcile: %v; want a 503 with a reason", err)
	}
	// A wrong token is still a 401, even before the first reconcile.
	if _, err := f.client("nope").list(nil); status(err) != http.StatusUnauthorized {
		t.Errorf("wrong token before sync: %v", err)
	}
	f.set(env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "x", SHA: shaA}, env.StatusReady, true)
	f.synced.Store(true)
	if l := f.listed(nil); l["pr-7"] != shaA {
		t.Errorf("after the first reconcile: %v", l)
	}
}

// TestStoreErrorFailsTheAnswer: an error answers 500, never a shorter
// list.
func TestStoreErrorFailsTheAnswer(t *testing.T) {
	srv := httptest.NewServer(New(Options{Token: "t0ken", Store: brokenStore{}}))
	defer srv.Close()
	_, err := (argoClient{baseURL: srv.URL, token: "t0ken"}).list(nil)
	if status(err) != http.StatusInternalServerError {
		t.Errorf("store error: %v; want a 500", err)
	}
}

type emptyStore struct{}

func (emptyStore) LiveRecords(context.Context) ([]store.Record, error) { return nil, nil }

// brokenStore cannot read its environments.
type brokenStore struct{}

func (brokenStore) LiveRecords(context.Context) ([]store.Record, error) {
	return nil, errors.New("disk on fire")
}
