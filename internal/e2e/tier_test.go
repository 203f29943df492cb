package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestGitHubDBTierOnPostgres: on the real PostgreSQL (through PgBouncer)
// and the fake GitHub, a pull request deployed at the configured tier
// (a schema) is re-provisioned as a database cloned from the template
// when labeled preview:db=clone, announced in its comment; with the label
// off, /preview db empty makes it an empty database (migrated, no rows),
// and /preview db default brings it back to a schema. Each time the app
// serves from the new database and the old tier's objects are gone.
func TestGitHubDBTierOnPostgres(t *testing.T) {
	pg := pgtest.Shared(t)
	app, _ := binaries(t)
	ctx := context.Background()
	prodDB, template := pg.NewDatabase(t), seededTemplate(t, pg, app)
	w := &ghWorld{t: t, fake: ghtest.New(t, "octocat", "Hello-World"), repo: newRepo(t)}
	mainSHA := w.repo.commit("main", map[string]string{"banner.txt": "production"})
	w.fake.SetBranch("main", mainSHA)
	w.fake.SetPermission("alice", "write")
	yaml := githubYAML(t.TempDir(), w.fake, w.repo.bare, app, "")
	yaml = strings.Replace(yaml, "database:\n  kind: sqlite\n", fmt.Sprintf(`database:
  kind: postgres
  postgres:
    adminURL: %q
    isolation: schema
    template: %q
    appHost: %q
`, pg.AdminURLFor(prodDB), template, pg.BouncerHostPort()), 1)
	w.in = start(t, yaml)
	w.a = w.in.api()
	w.a.waitStatus("production", env.StatusReady, mainSHA)

	// pr-N's key depends on nothing else here: names in the shared
	// cluster are the instance's own (its dataDir makes the instance).
	n := 41
	key := env.PullRequestKey(n)
	sha := w.pushPR(n, "tiers", map[string]string{"banner.txt": "tiers"})
	w.fake.OpenPR(ghtest.PR{Number: n, HeadRef: "tiers", HeadSHA: sha})
	w.prEvent("opened", n)
	w.a.waitStatus(key, env.StatusReady, sha)
	tierIs := func(want string) env.Environment {
		t.Helper()
		var e env.Environment
		eventually(t, 90*time.Second, func() string {
			e, _ = w.a.environment(key)
			if e.DBTier != want || e.Status != env.StatusReady {
				return fmt.Sprintf("%s is %s at tier %q (%s), want ready at %q", key, e.Status, e.DBTier, e.Message, want)
			}
			return ""
		})
		return e
	}
	documents := func() string {
		t.Helper()
		code, body := w.a.preview(key, "GET", "/api/documents", "")
		if code != http.StatusOK {
			t.Fatalf("documents: %d %s", code, body)
		}
		return body
	}
	has := func(sql string, args ...any) bool {
		t.Helper()
		conn, err := pg.Connect(ctx, prodDB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS ("+sql+")", args...).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	name := "preview_" + strings.ReplaceAll(key, "-", "_")
	schemaThere := func() bool { return has("SELECT 1 FROM pg_namespace WHERE nspname = $1", name) }
	databaseThere := func() bool { return has("SELECT 1 FROM pg_database WHERE datname = $1", name) }

	tierIs(env.DBTierSchema)
	if !schemaThere() || databaseThere() {
		t.Fatalf("at tier schema: schema %v, database %v", schemaThere(), databaseThere())
	}

	// The label.
	w.fake.UpdatePR(n, func(pr *ghtest.PR) { pr.Labels = []string{"preview:db=clone"} })
	w.prEvent("labeled", n)
	tierIs(env.DBTierClone)
	if !strings.Contains(documents(), "from the template") {
		t.Errorf("the clone does not hold the template's row: %s", documents())
	}
	if schemaThere() || !databaseThere() {
		t.Errorf("at tier clone: schema %v, database %v", schemaThere(), databaseThere())
	}
	w.waitComment(n, "database tier changed from schema to clone")

	// The label off, then the command.
	w.fake.UpdatePR(n, func(pr *ghtest.PR) { pr.Labels = nil })
	w.prEvent("unlabeled", n)
	tierIs(env.DBTierSchema)
	command := func(body, answer string) {
		t.Helper()
		id := w.fake.AddComment(n, "alice", body)
		w.deliver("issue_comment", w.fake.IssueCommentEvent(n, id))
		w.waitComment(n, answer)
	}
	command("/preview db empty", "@alice: db accepted: the database is re-created at tier `empty`")
	tierIs(env.DBTierEmpty)
	if got := documents(); strings.Contains(got, "from the template") {
		t.Errorf("the empty database holds the template's row: %s", got)
	}
	if schemaThere() || !databaseThere() {
		t.Errorf("at tier empty: schema %v, database %v", schemaThere(), databaseThere())
	}
	command("/preview db gold", "@alice: db refused: unknown database tier")
	command("/preview db default", "@alice: db accepted: the database is re-created at tier `schema`")
	tierIs(env.DBTierSchema)
	if !schemaThere() || databaseThere() {
		t.Errorf("back at tier schema: schema %v, database %v", schemaThere(), databaseThere())
	}
	if code, body := w.a.preview(key, "GET", "/healthz", ""); code != http.StatusOK || !strings.Contains(body, sha) {
		t.Errorf("after the tier changes: %d %s", code, body)
	}
}
