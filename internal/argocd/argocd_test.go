package argocd

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// argoRequest is the body Argo CD's ApplicationSet controller posts to a
// plugin generator (see its plugin generator docs): the ApplicationSet's
// name and the generator's input.parameters.
const argoRequest = `{"applicationSetName":"previews","input":{"parameters":{"includeProduction":"false"}}}`

func TestPluginGenerator(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "previewd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	add := func(src env.Source, status env.Status, db string) {
		if err := st.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
		url := "https://" + src.Key + ".preview.example.com"
		if err := st.Set(ctx, src.Key, store.Update{SHA: &src.SHA, Status: &status, URL: &url, Database: &db}); err != nil {
			t.Fatal(err)
		}
	}
	add(env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "feature/Login", SHA: "0123456789abcdef0123456789abcdef01234567"}, env.StatusReady, "preview_pr_7")
	add(env.Source{Key: "pr-8", Kind: env.KindPullRequest, Number: 8, Branch: "wip", SHA: "89abcdef0123456789abcdef0123456789abcdef"}, env.StatusMigrating, "preview_pr_8")
	add(env.Source{Key: "production", Kind: env.KindProduction, Branch: "main", SHA: "fedcba9876543210fedcba9876543210fedcba98"}, env.StatusReady, "public")

	h := New(Options{Token: "t0ken", Store: st, Describe: func(e env.Environment) (Params, error) {
		return Params{Namespace: "preview-" + e.Key, Host: e.Key + ".preview.example.com", Image: "ghcr.io/acme/shop:" + e.SHA, Secret: "previewd-env"}, nil
	}})
	post := func(token, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", Path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}

	for name, token := range map[string]string{"none": "", "wrong": "nope"} {
		if w := post(token, argoRequest); w.Code != http.StatusUnauthorized {
			t.Errorf("token %s: status %d; want 401", name, w.Code)
		}
	}
	if w := post("t0ken", "{"); w.Code != http.StatusBadRequest {
		t.Errorf("bad body: status %d; want 400", w.Code)
	}

	w := post("t0ken", argoRequest)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	// Decode generically, as Argo CD does: output.parameters is a list of
	// string maps.
	var got struct {
		Output struct {
			Parameters []map[string]any `json:"parameters"`
		} `json:"output"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{{
		"key": "pr-7", "kind": "pull_request", "number": "7", "branch": "feature/Login", "branch_slug": "feature-login",
		"sha": "0123456789abcdef0123456789abcdef01234567", "short_sha": "0123456",
		"namespace": "preview-pr-7", "url": "https://pr-7.preview.example.com", "host": "pr-7.preview.example.com",
		"image":    "ghcr.io/acme/shop:0123456789abcdef0123456789abcdef01234567",
		"database": "preview_pr_7", "secret": "previewd-env", "production": "false",
	}}
	gj, _ := json.Marshal(got.Output.Parameters)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("parameters:\n got %s\nwant %s", gj, wj)
	}

	// Asking for production includes it.
	w = post("t0ken", `{"applicationSetName":"all","input":{"parameters":{"includeProduction":true}}}`)
	if !strings.Contains(w.Body.String(), `"key":"production"`) {
		t.Errorf("production missing: %s", w.Body)
	}
	// An empty list is [], not null.
	empty := New(Options{Token: "t0ken", Store: emptyStore{}})
	req := httptest.NewRequest("POST", Path, strings.NewReader(argoRequest))
	req.Header.Set("Authorization", "Bearer t0ken")
	rec := httptest.NewRecorder()
	empty.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"parameters":[]`) {
		t.Errorf("empty answer = %s", rec.Body)
	}
}

type emptyStore struct{}

func (emptyStore) Live(context.Context) ([]env.Environment, error) { return nil, nil }
