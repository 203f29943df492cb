package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		template = seededTemplate(t, pg, app)
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

	// The migrations were rehearsed first, on a clone of the template or
	// a schema-only copy of production, and the rehearsal database is
	// gone.
	var rh env.Rehearsal
	if code := a.getJSON("/api/v1/environments/"+branch+"/rehearsal", &rh); code != http.StatusOK || rh.Engine != "postgres" || rh.Error != "" || rh.Skipped != "" || rh.SHA != sha {
		t.Errorf("rehearsal: %d %+v", code, rh)
	}
	wantFrom := "a schema-only copy of production's database"
	if isolation == "database" {
		wantFrom = "a clone of template"
	}
	if !strings.HasPrefix(rh.From, wantFrom) {
		t.Errorf("rehearsed on %q; want %q…", rh.From, wantFrom)
	}

	// reset-db: a fresh database (the template's, or an empty schema),
	// migrated while the old one serves; the branch's own row is gone and
	// the app answers from the fresh one.
	if code, body := a.post("/api/v1/environments/"+branch+"/reset-db", ""); code != http.StatusAccepted {
		t.Fatalf("reset-db: %d %s", code, body)
	}
	eventually(t, 60*time.Second, func() string {
		if a.hasEvent(branch, "DatabaseReset") || a.hasEvent(branch, "DatabaseResetFailed") {
			return ""
		}
		return "no reset yet"
	})
	if a.hasEvent(branch, "DatabaseResetFailed") {
		e, _ := a.environment(branch)
		t.Fatalf("reset-db failed: %s", e.Message)
	}
	code, docs = a.preview(branch, "GET", "/api/documents", "")
	if code != http.StatusOK || strings.Contains(docs, "branch only") {
		t.Errorf("after reset-db: %d %s; want the branch's document gone", code, docs)
	}
	if isolation == "database" && !strings.Contains(docs, "from the template") {
		t.Errorf("after reset-db the database lacks the template's row: %s", docs)
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

// TestExampleAppOnPostgres runs the example app's own PostgreSQL test
// (the wrong-schema guard, migrations into the role's schema, CRUD)
// against the real server, directly and through PgBouncer in transaction
// mode. The app is self-contained and cannot import pgtest, so its test
// takes the server from the environment.
func TestExampleAppOnPostgres(t *testing.T) {
	pg := pgtest.Shared(t)
	db := pg.NewDatabase(t)
	for name, bouncer := range map[string]string{"direct": "", "pgbouncer": pg.BouncerHostPort()} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("go", "test", "-count=1", "-run", "^TestPostgres$", "-v", "./examples/markdown-editor/app")
			cmd.Dir = moduleRoot()
			cmd.Env = append(os.Environ(), "MARKDOWN_EDITOR_TEST_POSTGRES_URL="+pg.AdminURLFor(db), "MARKDOWN_EDITOR_TEST_PGBOUNCER_ADDR="+bouncer)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestPostgres") {
				t.Fatalf("the app's PostgreSQL test did not pass: %v\n%s", err, out)
			}
		})
	}
}

// TestDBCommandsPostgres runs `previewd db create|migrate|drop` as a CI
// pipeline would: create prints a URL that works, a second create keeps the
// data and prints a URL that still works, migrate runs as the environment's
// role in its schema, bad keys run no SQL, and drop removes schema and
// role but never production.
func TestDBCommandsPostgres(t *testing.T) {
	pg := pgtest.Shared(t)
	app, previewd := binaries(t)
	ctx := context.Background()
	db := pg.NewDatabase(t)
	cfg := filepath.Join(t.TempDir(), "previewd.yaml")
	yaml := fmt.Sprintf("dataDir: %q\nforge: {git: {url: /nonexistent}}\nmigrate: %q\ndatabase:\n  kind: postgres\n  postgres: {adminURL: %q, appHost: %q}\n",
		t.TempDir(), app+" migrate", pg.AdminURLFor(db), pg.BouncerHostPort())
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(previewd, append(args, "--config", cfg)...).CombinedOutput()
		return string(out), err
	}
	vars := func(out string) map[string]string {
		m := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				m[k] = v
			}
		}
		return m
	}
	out, err := run("db", "create", "--key", "pr-77", "--show-secrets")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	v := vars(out)
	if v["DATABASE_SCHEMA"] != "preview_pr_77" || !strings.Contains(v["DATABASE_URL"], pg.BouncerHostPort()) {
		t.Fatalf("create printed %q", out)
	}
	conn, err := pgxConnect(ctx, v["DATABASE_URL"])
	if err != nil {
		t.Fatalf("connecting with the printed URL: %v", err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	out2, err := run("db", "create", "--key", "pr-77", "--show-secrets")
	if err != nil || out2 != out {
		t.Fatalf("second create: %v %q, want the same output %q", err, out2, out)
	}
	conn, err = pgxConnect(ctx, vars(out2)["DATABASE_URL"])
	if err != nil {
		t.Fatalf("the second URL does not work: %v", err)
	}
	var got, schema string
	if err := conn.QueryRow(ctx, `SELECT v, current_schema() FROM kept`).Scan(&got, &schema); err != nil || got != "still here" || schema != "preview_pr_77" {
		t.Errorf("after the second create: %q in %q, err %v", got, schema, err)
	}
	conn.Close(ctx)
	if out, err := run("db", "migrate", "--key", "pr-77"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	var tables int
	c, _ := pg.Connect(ctx, db)
	c.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'preview_pr_77' AND tablename = 'documents'`).Scan(&tables)
	c.Close(ctx)
	if tables != 1 {
		t.Errorf("migrate did not create documents in the environment's schema")
	}
	for _, key := range []string{"x'; DROP SCHEMA public CASCADE; --", "$$", strings.Repeat("a", 300), "Pr-1"} {
		if out, err := run("db", "create", "--key", key); err == nil || !strings.Contains(out, "--key") {
			t.Errorf("key %q accepted: %s", key, out)
		}
	}
	if out, err := run("db", "drop", "--key", "production"); err == nil {
		t.Errorf("drop production succeeded: %s", out)
	}
	if out, err := run("db", "drop", "--key", "pr-77"); err != nil {
		t.Fatalf("drop: %v\n%s", err, out)
	}
	if out, err := run("db", "drop", "--key", "pr-77"); err != nil {
		t.Fatalf("second drop: %v\n%s", err, out)
	}
	c, _ = pg.Connect(ctx, db)
	defer c.Close(ctx)
	var left int
	c.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'preview_pr_77') + (SELECT count(*) FROM pg_roles WHERE rolname = 'preview_pr_77')`).Scan(&left)
	if left != 0 {
		t.Errorf("drop left %d objects", left)
	}
}

// seededTemplate returns a new database holding the example app's
// migrated schema and one document, "from the template", as a seed
// database would.
func seededTemplate(t *testing.T, pg *pgtest.Cluster, app string) string {
	t.Helper()
	template := pg.NewDatabase(t)
	migrate := exec.Command(app, "migrate")
	migrate.Env = append(os.Environ(), "DATABASE_URL="+pg.AdminURLFor(template), "DATABASE_SCHEMA=public")
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrating the template: %v\n%s", err, out)
	}
	if err := pg.Exec(context.Background(), template, `INSERT INTO documents (title, content) VALUES ('from the template', 'seeded')`); err != nil {
		t.Fatal(err)
	}
	return template
}
