package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestPostgresEnvironments runs the foundation's flow with database.kind
// postgres in both isolation modes, with apps reaching the database through
// PgBouncer in transaction mode: a branch gets its own role and schema (or
// database, cloned from a template with data), serves from it, and when the
// branch is deleted the schema, database and role are gone while
// production's tables stay.
func TestPostgresEnvironments(t *testing.T) {
	for _, isolation := range []string{"schema", "database"} {
		t.Run(isolation, func(t *testing.T) { testPostgres(t, isolation) })
	}
}

func testPostgres(t *testing.T, isolation string) {
	pg := pgtest.Shared(t)
	app, _ := binaries(t)
	ctx := context.Background()
	prodDB := pg.NewDatabase(t)
	template := ""
	if isolation == "database" {
		template = pg.NewDatabase(t)
		// The template holds the migrated schema and a row, as a seed
		// database would.
		migrate := exec.Command(app, "migrate")
		migrate.Env = append(os.Environ(), "DATABASE_URL="+pg.AdminURLFor(template), "DATABASE_SCHEMA=public")
		if out, err := migrate.CombinedOutput(); err != nil {
			t.Fatalf("migrating the template: %v\n%s", err, out)
		}
		if err := pg.Exec(ctx, template, `INSERT INTO documents (title, content) VALUES ('from the template', 'seeded')`); err != nil {
			t.Fatal(err)
		}
	}
	r := newRepo(t)
	r.commit("main", map[string]string{"banner.txt": "production"})
	branch := "pg-" + isolation
	sha := r.commit(branch, map[string]string{"banner.txt": branch})
	yaml := configYAML(t.TempDir(), r.bare, app, "")
	yaml = strings.Replace(yaml, "database:\n  kind: sqlite\n", fmt.Sprintf(`database:
  kind: postgres
  postgres:
    adminURL: %q
    isolation: %s
    template: %q
    appHost: %q
`, pg.AdminURLFor(prodDB), isolation, template, pg.BouncerHostPort()), 1)
	in := start(t, yaml)
	a := in.api()
	a.waitStatus("production", env.StatusReady, "")
	e := a.waitStatus(branch, env.StatusReady, sha)
	name := "preview_pg_" + isolation
	if e.Database != name {
		t.Errorf("database = %q, want %q", e.Database, name)
	}

	code, body := a.preview(branch, "GET", "/healthz", "")
	var h struct{ Database, Schema, SHA string }
	json.Unmarshal([]byte(body), &h)
	wantSchema := name
	if isolation == "database" {
		wantSchema = "public"
	}
	if code != http.StatusOK || h.Database != "postgres" || h.Schema != wantSchema || h.SHA != sha {
		t.Fatalf("%s healthz: %d %s", branch, code, body)
	}
	if code, body := a.preview(branch, "POST", "/api/documents", `{"title":"branch only","content":"x"}`); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	_, docs := a.preview(branch, "GET", "/api/documents", "")
	if !strings.Contains(docs, "branch only") {
		t.Errorf("branch does not see its document: %s", docs)
	}
	if isolation == "database" && !strings.Contains(docs, "from the template") {
		t.Errorf("the clone lacks the template's row: %s", docs)
	}
	if _, prod := a.preview("production", "GET", "/api/documents", ""); strings.Contains(prod, "branch only") {
		t.Errorf("production sees the branch's document: %s", prod)
	}

	exists := func(query string) bool {
		conn, err := pg.Connect(ctx, prodDB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var ok bool
		if err := conn.QueryRow(ctx, query, name).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	objects := map[string]string{
		"role":   `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`,
		"schema": `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`,
	}
	if isolation == "database" {
		objects = map[string]string{
			"role":     objects["role"],
			"database": `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`,
		}
	}
	for what, q := range objects {
		if !exists(q) {
			t.Errorf("%s %s does not exist", what, name)
		}
	}

	r.deleteBranch(branch)
	in.sync()
	a.waitGone(branch)
	for what, q := range objects {
		if exists(q) {
			t.Errorf("%s %s survived its branch", what, name)
		}
	}
	// Production's tables and rows are intact.
	if code, body := a.preview("production", "GET", "/api/documents", ""); code != http.StatusOK || !strings.Contains(body, "documents") {
		t.Errorf("production after teardown: %d %s", code, body)
	}
	conn, err := pg.Connect(ctx, prodDB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM public.documents`).Scan(&n); err != nil {
		t.Errorf("production's table: %v", err)
	}
}
