package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/pgtest"
)

// TestDBRefreshTemplate runs `previewd db refresh-template` against a real
// PostgreSQL: it prints the report and the template holds masked rows; an
// identity masking expression fails naming its column and keeps the
// template; production's rows stay as they were.
func TestDBRefreshTemplate(t *testing.T) {
	pg := pgtest.Shared(t)
	prod := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := pg.Exec(ctx, prod, `CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
		INSERT INTO users SELECT g, 'p' || g || '@real.test' FROM generate_series(1, 5) g`); err != nil {
		t.Fatal(err)
	}
	tpl := fmt.Sprintf("cli_tpl_%d", os.Getpid())
	t.Cleanup(func() {
		for _, n := range []string{tpl, tpl + "$new", tpl + "$old"} {
			if err := pg.DropDatabase(context.Background(), n); err != nil {
				t.Error(err)
			}
		}
	})
	t.Setenv("REFRESH_ADMIN", pg.AdminURLFor(prod))
	config := func(expr string) string {
		return writeConfig(t, "dataDir: "+t.TempDir()+"\nforge: {git: {url: /tmp/repo}}\n"+
			"database: {kind: postgres, postgres: {adminURL: '${REFRESH_ADMIN}', isolation: database, template: "+tpl+
			", passwordSecret: refresh-secret, masking: {users.email: \""+expr+"\"}}}\n")
	}
	code, out, errs := run(t, "db", "refresh-template", "--config", config("'user' || id || '@example.com'"))
	if code != 0 {
		t.Fatalf("refresh-template: exit %d, %q %q", code, out, errs)
	}
	for _, want := range []string{"refreshed template " + tpl + " from " + prod + " in ", "copied: 1 tables, 5 rows, ", "masked: public.users.email (5 values)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q does not say %q", out, want)
		}
	}
	emails := func(db string) string {
		conn, err := pg.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var s string
		if err := conn.QueryRow(ctx, "SELECT string_agg(email, ',' ORDER BY id) FROM users").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	const masked = "user1@example.com,user2@example.com,user3@example.com,user4@example.com,user5@example.com"
	const original = "p1@real.test,p2@real.test,p3@real.test,p4@real.test,p5@real.test"
	if got := emails(tpl); got != masked {
		t.Errorf("template emails %q; want %q", got, masked)
	}
	code, out, errs = run(t, "db", "refresh-template", "--config", config("email"))
	if code == 0 || !strings.Contains(errs, "users.email: every value unchanged (5 of 5 non-null)") {
		t.Errorf("identity masking: exit %d, %q %q; want a failure naming users.email", code, out, errs)
	}
	if got := emails(tpl); got != masked {
		t.Errorf("after a failed refresh, template emails %q; want %q", got, masked)
	}
	noMasking := writeConfig(t, "dataDir: "+t.TempDir()+"\nforge: {git: {url: /tmp/repo}}\n"+
		"database: {kind: postgres, postgres: {adminURL: '${REFRESH_ADMIN}', isolation: database, template: "+tpl+", passwordSecret: refresh-secret}}\n")
	code, out, errs = run(t, "db", "refresh-template", "--config", noMasking)
	if code == 0 || !strings.Contains(errs, "pass --unmasked") {
		t.Errorf("without masking: exit %d, %q %q; want a refusal", code, out, errs)
	}
	if got := emails(tpl); got != masked {
		t.Errorf("after a refused refresh, template emails %q; want %q", got, masked)
	}
	code, out, errs = run(t, "db", "refresh-template", "--config", noMasking, "--unmasked")
	if code != 0 || !strings.Contains(out, "masked: nothing") {
		t.Errorf("--unmasked: exit %d, %q %q", code, out, errs)
	}
	if got := emails(tpl); got != original {
		t.Errorf("after --unmasked, template emails %q; want production's", got)
	}
	if got := emails(prod); got != original {
		t.Errorf("production emails %q; want %q", got, original)
	}
}
