package app

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// TestPostgres runs the app against a real PostgreSQL the way previewd sets
// one up: a role per environment whose default search_path is its own
// schema. It runs only when MARKDOWN_EDITOR_TEST_POSTGRES_URL names a role
// that may create roles and schemas. If MARKDOWN_EDITOR_TEST_PGBOUNCER_ADDR
// (host:port) is set too, the app connects through that PgBouncer instead,
// which should pool in transaction mode and accept the new role.
func TestPostgres(t *testing.T) {
	adminURL := os.Getenv("MARKDOWN_EDITOR_TEST_POSTGRES_URL")
	if adminURL == "" {
		// previewd's internal/e2e TestExampleAppOnPostgres runs this test with
		// a real PostgreSQL and PgBouncer; on its own the app has none.
		t.Skip("set MARKDOWN_EDITOR_TEST_POSTGRES_URL to run against PostgreSQL")
	}
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() }) // runs after the cleanups below

	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := "me_test_" + hex.EncodeToString(suffix) // role and schema
	password := hex.EncodeToString(suffix) + "pw"
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", name, password),
		fmt.Sprintf("CREATE SCHEMA %s AUTHORIZATION %s", name, name),
		fmt.Sprintf("ALTER ROLE %s SET search_path = %s", name, name),
	} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		for _, q := range []string{
			fmt.Sprintf("DROP SCHEMA IF EXISTS %s CASCADE", name),
			fmt.Sprintf("DROP ROLE IF EXISTS %s", name),
		} {
			if _, err := admin.Exec(q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})

	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(name, password)
	if addr := os.Getenv("MARKDOWN_EDITOR_TEST_PGBOUNCER_ADDR"); addr != "" {
		u.Host = addr
	}
	dir := t.TempDir()
	envFor := func(schema string) map[string]string {
		return map[string]string{"DATABASE_URL": u.String(), "DATABASE_SCHEMA": schema}
	}
	tableIn := func(schema, table string) bool {
		var n int
		if err := admin.QueryRow("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", schema, table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	// The schema guard: a wrong DATABASE_SCHEMA stops both commands before
	// they touch anything.
	for _, cmd := range []string{"migrate", "serve"} {
		code, stderr := runCmd(t, t.Context(), dir, envFor("pr_other"), cmd)
		if code != 1 || !strings.Contains(stderr, `DATABASE_SCHEMA is \"pr_other\"`) ||
			!strings.Contains(stderr, `current_schema() is \"`+name+`\"`) {
			t.Errorf("%s with the wrong schema: exit %d, stderr:\n%s", cmd, code, stderr)
		}
	}
	if tableIn(name, "goose_db_version") {
		t.Fatalf("the guard let goose create its table")
	}

	code, stderr := runCmd(t, t.Context(), dir, envFor(name), "serve")
	if code != 1 || !strings.Contains(stderr, "pending migrations: version 1") {
		t.Errorf("serve before migrate: exit %d, stderr:\n%s", code, stderr)
	}

	code, stderr = runCmd(t, t.Context(), dir, envFor(name), "migrate")
	if code != 0 || !strings.Contains(stderr, "version=3") {
		t.Fatalf("migrate: exit %d, stderr:\n%s", code, stderr)
	}
	if !tableIn(name, "documents") || !tableIn(name, "goose_db_version") || tableIn("public", "documents") {
		t.Errorf("tables not (only) in schema %s", name)
	}
	if code, stderr = runCmd(t, t.Context(), dir, envFor(name), "migrate"); code != 0 || !strings.Contains(stderr, "applied=0") {
		t.Errorf("second migrate: exit %d, stderr:\n%s", code, stderr)
	}

	app := newTestAppIn(t, dir, envFor(name))
	_, body := app.do(t, "GET", "/healthz", "", "")
	if h := decode[health](t, body); h.Status != "ok" || h.Database != "postgres" || h.Schema != name {
		t.Errorf("healthz = %+v", h)
	}
	res, body := app.do(t, "POST", "/api/documents", jsonType, `{"title": "On postgres", "content": "*hi*"}`)
	if res.StatusCode != 201 {
		t.Fatalf("create: %d %s", res.StatusCode, body)
	}
	created := decode[document](t, body)
	// Run each statement several times: with prepared statements behind
	// PgBouncer in transaction mode, repeats are what fail.
	for range 5 {
		res, body = app.do(t, "GET", fmt.Sprintf("/api/documents/%d", created.ID), "", "")
		if got := decode[document](t, body); res.StatusCode != 200 || got.Title != "On postgres" || got.HTML != "<p><em>hi</em></p>\n" ||
			!got.CreatedAt.Equal(created.CreatedAt) {
			t.Fatalf("get: %d %+v", res.StatusCode, got)
		}
		res, body = app.do(t, "PUT", fmt.Sprintf("/api/documents/%d", created.ID), jsonType, `{"title": "On postgres", "content": "*hi*"}`)
		if res.StatusCode != 200 {
			t.Fatalf("update: %d %s", res.StatusCode, body)
		}
		_, body = app.do(t, "GET", "/api/documents", "", "")
		if l := decode[documentList](t, body); len(l.Documents) != 2 || l.Documents[0].ID != created.ID {
			t.Fatalf("list: %+v", l.Documents)
		}
	}
	if res, body = app.do(t, "PUT", fmt.Sprintf("/api/documents/%d", created.ID), jsonType, `{"title": "Renamed"}`); res.StatusCode != 200 {
		t.Fatalf("update: %d %s", res.StatusCode, body)
	}
	var title string
	if err := admin.QueryRow(fmt.Sprintf("SELECT title FROM %s.documents WHERE id = $1", name), created.ID).Scan(&title); err != nil || title != "Renamed" {
		t.Errorf("row in %s.documents: %q, %v", name, title, err)
	}
	if res, _ = app.do(t, "DELETE", fmt.Sprintf("/api/documents/%d", created.ID), "", ""); res.StatusCode != 204 {
		t.Errorf("delete: %d", res.StatusCode)
	}
	_, page := app.do(t, "GET", "/", "", "")
	if !strings.Contains(page, "postgres · schema "+name) {
		t.Errorf("footer does not name the schema")
	}
}
