package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// TestDBTierAPI: POST …/db-tier passes the tier asked for to the
// reconciler and answers what it gives, audited; a refusal is a 400 with
// the reason, production a 409, an unknown key a 404, a bad body a 400
// before anything is recorded, and no reconciler a 503.
func TestDBTierAPI(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, src := range []env.Source{
		{Key: "pr-3", Kind: env.KindPullRequest, Number: 3, Branch: "fix"},
		{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main"},
	} {
		if err := st.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
	}
	var asked []string
	tiers := func(_ context.Context, key, tier string) (env.TierChoice, error) {
		asked = append(asked, key+":"+tier)
		switch tier {
		case "clone":
			return env.TierChoice{Tier: "clone", Made: "schema"}, nil
		case "schema":
			return env.TierChoice{Tier: "schema", Made: "schema", Label: "clone"}, nil
		}
		return env.TierChoice{}, &env.TierError{Why: "database tier " + tier + " is not offered: no database.postgres.template"}
	}
	made := env.DBTierSchema
	if err := st.Set(ctx, "pr-3", store.Update{DBTier: &made}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Store: st, Domain: "preview.test", DBTier: tiers, DBTiers: []string{"schema", "clone"}}))
	t.Cleanup(srv.Close)
	bare := httptest.NewServer(New(Options{Store: st, Domain: "preview.test"}))
	t.Cleanup(bare.Close)

	post := func(base, key, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(base+"/api/v1/environments/"+key+"/db-tier", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, c := range []struct {
		base, key, body string
		code            int
		field, want     string
	}{
		{srv.URL, "pr-3", `{"tier": "Clone"}`, 202, "note", "the database is re-created at tier clone (it was schema), migrated and seeded"},
		{srv.URL, "pr-3", `{"tier": "schema"}`, 202, "note", "the label preview:db=clone still chooses tier clone"},
		{srv.URL, "pr-3", `{"tier": "empty"}`, 400, "error", "database tier empty is not offered: no database.postgres.template"},
		{srv.URL, "pr-3", ``, 400, "error", "tier missing"},
		{srv.URL, "pr-3", `{"tier": 1}`, 400, "error", `the body is not {"tier": "clone"}`},
		{srv.URL, "pr-3", `{"tier": "clone", "x": 1}`, 400, "error", `the body is not {"tier": "clone"}`},
		{srv.URL, env.ProductionKey, `{"tier": "clone"}`, 409, "error", "production's database never changes tier"},
		{srv.URL, "nope", `{"tier": "clone"}`, 404, "error", "not found"},
		{bare.URL, "pr-3", `{"tier": "clone"}`, 503, "error", "no reconciler runs here"},
	} {
		code, out := post(c.base, c.key, c.body)
		if got, _ := out[c.field].(string); code != c.code || !strings.Contains(got, c.want) {
			t.Errorf("%s %s: %d %v; want %d with %s %q", c.key, c.body, code, out, c.code, c.field, c.want)
		}
	}
	if _, out := post(srv.URL, "pr-3", `{"tier": "clone"}`); out["dbTier"] == nil || out["dbTier"].(map[string]any)["made"] != "schema" {
		t.Errorf("the answer does not carry the tier: %v", out)
	}
	if strings.Join(asked, " ") != "pr-3:clone pr-3:schema pr-3:empty pr-3:clone" {
		t.Errorf("the reconciler was asked %v", asked)
	}
	entries, err := st.Audit(ctx, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" "+e.Key+" "+e.Detail)
	}
	if strings.Join(got, ",") != "db-tier pr-3 clone,db-tier pr-3 empty,db-tier pr-3 schema,db-tier pr-3 clone" {
		t.Errorf("audit %v", got)
	}

	// The dashboard: the tier is shown and offered, its form asks as the
	// API does; production, and a server with one tier, offer none.
	page := func(base, key string) string {
		t.Helper()
		resp, err := http.Get(base + "/environments/" + key)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if p := page(srv.URL, "pr-3"); !strings.Contains(p, `<option value="schema" selected>schema</option>`) || !strings.Contains(p, `<option value="clone">clone</option>`) || !strings.Contains(p, `id="db-tier-button"`) {
		t.Errorf("the page does not offer the tiers:\n%s", p)
	}
	for _, c := range []struct{ base, key string }{{srv.URL, env.ProductionKey}, {bare.URL, "pr-3"}} {
		if p := page(c.base, c.key); strings.Contains(p, "tier-select") {
			t.Errorf("%s offers a tier where it cannot change", c.key)
		}
	}
	form := func(tier string) *http.Response {
		t.Helper()
		resp, err := noRedirect.PostForm(srv.URL+"/environments/pr-3/db-tier", url.Values{"tier": {tier}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := form("clone"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/environments/pr-3" {
		t.Errorf("form clone: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if resp := form("empty"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("form empty: %s, want 400", resp.Status)
	}
	if asked[len(asked)-2] != "pr-3:clone" || asked[len(asked)-1] != "pr-3:empty" {
		t.Errorf("the form asked %v", asked)
	}
}
