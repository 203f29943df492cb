package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// TestDownUp: an admin puts an environment down (audited, marked in the
// store, shown by GET and on the dashboard); an operator brings it up;
// production is refused.
func TestDownUp(t *testing.T) {
	f := newFixture(t, auth.None, false)
	ctx := context.Background()
	if err := f.st.Upsert(ctx, env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main"}); err != nil {
		t.Fatal(err)
	}
	if resp := f.do("POST", "/api/v1/environments/pr-3/down", adminToken, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("down = %d: %s", resp.StatusCode, body(t, resp))
	}
	if down, err := f.st.IsDown(ctx, "pr-3"); err != nil || !down {
		t.Fatalf("IsDown = %v, %v", down, err)
	}
	var got struct {
		Key  string `json:"key"`
		Down bool   `json:"down"`
	}
	if err := json.Unmarshal([]byte(body(t, f.do("GET", "/api/v1/environments/pr-3", viewerToken, nil, nil))), &got); err != nil || got.Key != "pr-3" || !got.Down {
		t.Fatalf("GET after down = %+v, %v; want down", got, err)
	}
	page := body(t, f.do("GET", "/", operatorToken, nil, nil))
	if !strings.Contains(page, `id="down"`) || !strings.Contains(page, `action="/environments/pr-3/up"`) {
		t.Errorf("dashboard does not offer up:\n%s", page)
	}
	page = body(t, f.do("GET", "/environments/pr-3", operatorToken, nil, nil))
	if !strings.Contains(page, `id="up"`) || strings.Contains(page, `id="down-button"`) {
		t.Errorf("environment page while down:\n%s", page)
	}
	if resp := f.do("POST", "/api/v1/environments/pr-3/up", operatorToken, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("up = %d: %s", resp.StatusCode, body(t, resp))
	}
	if down, err := f.st.IsDown(ctx, "pr-3"); err != nil || down {
		t.Fatalf("IsDown after up = %v, %v", down, err)
	}
	// Admins see a down button; operators do not; production never has one.
	if page := body(t, f.do("GET", "/environments/pr-3", adminToken, nil, nil)); !strings.Contains(page, `id="down-button"`) {
		t.Errorf("admin sees no down button:\n%s", page)
	}
	if page := body(t, f.do("GET", "/environments/pr-3", operatorToken, nil, nil)); strings.Contains(page, `id="down-button"`) {
		t.Errorf("operator sees a down button")
	}
	if page := body(t, f.do("GET", "/environments/"+env.ProductionKey, adminToken, nil, nil)); strings.Contains(page, `id="down-button"`) {
		t.Errorf("production has a down button")
	}
	resp := f.do("POST", "/api/v1/environments/"+env.ProductionKey+"/down", adminToken, nil, nil)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("down production = %d, want 409", resp.StatusCode)
	}
	if down, err := f.st.IsDown(ctx, env.ProductionKey); err != nil || down {
		t.Fatalf("production marked down: %v %v", down, err)
	}
	if resp := f.do("POST", "/api/v1/environments/pr-99/down", adminToken, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("down of an unknown key = %d, want 404", resp.StatusCode)
	}
	entries, err := f.st.Audit(ctx, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, e := range entries {
		acts = append([]string{e.Actor + " " + e.Action + " " + e.Key + " " + e.Via}, acts...)
	}
	want := "token:ci down pr-3 api,token:deployer up pr-3 api"
	if got := strings.Join(acts, ","); got != want {
		t.Errorf("audit = %s\nwant %s", got, want)
	}
}

// TestRevokeTrusted: the API lists trusted contributors for viewers and
// revokes one for operators (audited); the dashboard lists them with a
// Revoke button for operators.
func TestRevokeTrusted(t *testing.T) {
	f := newFixture(t, auth.None, false)
	ctx := context.Background()
	if err := f.st.Trust(ctx, "Octocat", "github:alice"); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Trusted []store.Contributor `json:"trusted"`
	}
	if err := json.Unmarshal([]byte(body(t, f.do("GET", "/api/v1/trusted", viewerToken, nil, nil))), &list); err != nil || len(list.Trusted) != 1 || list.Trusted[0].Login != "octocat" {
		t.Fatalf("trusted = %+v, %v", list, err)
	}
	if page := body(t, f.do("GET", "/", viewerToken, nil, nil)); !strings.Contains(page, "@octocat") || strings.Contains(page, `action="/trusted/octocat/revoke"`) {
		t.Errorf("viewer's dashboard: the list without buttons wanted:\n%s", page)
	}
	if page := body(t, f.do("GET", "/", operatorToken, nil, nil)); !strings.Contains(page, `action="/trusted/octocat/revoke"`) {
		t.Errorf("operator's dashboard has no revoke button:\n%s", page)
	}
	if resp := f.do("DELETE", "/api/v1/trusted/@OctoCat", operatorToken, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke = %d: %s", resp.StatusCode, body(t, resp))
	}
	if got, err := f.st.Trusted(ctx); err != nil || len(got) != 0 {
		t.Fatalf("trusted after revoke = %+v, %v", got, err)
	}
	if resp := f.do("DELETE", "/api/v1/trusted/octocat", operatorToken, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second revoke = %d, want 404", resp.StatusCode)
	}
	if resp := f.do("DELETE", "/api/v1/trusted/bad..login", operatorToken, nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad login = %d, want 400", resp.StatusCode)
	}
	entries, err := f.st.Audit(ctx, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[1].Action != ActionRevoke || entries[1].Actor != "token:deployer" || entries[1].Detail != "@OctoCat" || entries[1].Via != "api" {
		t.Errorf("audit = %+v", entries)
	}
}
