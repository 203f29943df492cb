package postgres

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPublicConnect: in isolation database, a preview role can connect to
// production's database through PUBLIC's default privilege, and
// PublicConnect says so; after the statements it names, the preview role
// is refused, production's role still connects, and PublicConnect is
// quiet. Isolation schema never warns.
func TestPublicConnect(t *testing.T) {
	f := setup(t)
	app := "app_" + strings.ReplaceAll(key("pc"), "-", "_")
	f.admin(`CREATE ROLE ` + pgx.Identifier{app}.Sanitize() + ` LOGIN PASSWORD 'app-pw'`)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.c.Exec(ctx, "postgres", `DROP ROLE IF EXISTS `+pgx.Identifier{app}.Sanitize())
	})
	o := f.cfg(IsolationDatabase)
	o.ProductionURL = f.c.DSN(app, "app-pw", f.db)
	p := f.provider(o)

	warn, err := p.PublicConnect(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	stmts := "REVOKE CONNECT ON DATABASE " + pgx.Identifier{f.db}.Sanitize() + " FROM PUBLIC; GRANT CONNECT ON DATABASE " +
		pgx.Identifier{f.db}.Sanitize() + " TO " + pgx.Identifier{app}.Sanitize() + ", " + pgx.Identifier{"admin"}.Sanitize() + ";"
	if !strings.Contains(warn, "PUBLIC") || !strings.HasSuffix(warn, stmts) {
		t.Fatalf("before REVOKE: warning %q; want it to end with %q", warn, stmts)
	}
	// The warning is true: a preview role connects to production's database.
	preview := f.ensure(p, key("pc"))
	u, err := url.Parse(preview.Vars["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + f.db
	prodAsPreview := u.String()
	if c := connect(f.ctx, t, prodAsPreview); sqlState(f.ctx, c, "SELECT count(*) FROM public.orders") != "42501" {
		t.Errorf("a preview role read production's table")
	}

	// Run exactly what the warning says.
	f.admin(warn[strings.Index(warn, "REVOKE"):])
	if warn, err := p.PublicConnect(f.ctx); err != nil || warn != "" {
		t.Errorf("after REVOKE: %q, %v; want no warning", warn, err)
	}
	cfg, err := pgx.ParseConfig(prodAsPreview)
	if err != nil {
		t.Fatal(err)
	}
	var pe *pgconn.PgError
	if c, err := pgx.ConnectConfig(f.ctx, cfg); err == nil {
		c.Close(f.ctx)
		t.Errorf("after REVOKE: a preview role still connects to production's database")
	} else if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Errorf("after REVOKE: %v; want 42501 insufficient_privilege", err)
	}
	connect(f.ctx, t, o.ProductionURL) // production's role still connects
	// Preview databases are still usable by their own role.
	if c := connect(f.ctx, t, preview.Vars["DATABASE_URL"]); sqlState(f.ctx, c, "CREATE TABLE t (id int)") != "" {
		t.Errorf("after REVOKE: the preview role cannot use its own database")
	}

	// Schema isolation: every role shares the database by design.
	f.admin(`GRANT CONNECT ON DATABASE ` + pgx.Identifier{f.db}.Sanitize() + ` TO PUBLIC`)
	if warn, err := f.provider(f.cfg(IsolationSchema)).PublicConnect(f.ctx); err != nil || warn != "" {
		t.Errorf("isolation schema: %q, %v; want no warning", warn, err)
	}
}

func TestPublicConnectWarning(t *testing.T) {
	for name, tc := range map[string]struct {
		db, prod, admin string
		adminInDB       bool
		want            string
	}{
		"admin is production": {"shop", "previewd", "previewd", true, `TO "previewd";`},
		"own production role": {"shop", "shop_app", "previewd", true, `TO "shop_app", "previewd";`},
		"admin elsewhere":     {"shop", "shop_app", "previewd", false, `TO "shop_app";`},
		"odd names quoted":    {`sh"op`, "a b", "previewd", false, `REVOKE CONNECT ON DATABASE "sh""op" FROM PUBLIC; GRANT CONNECT ON DATABASE "sh""op" TO "a b";`},
	} {
		t.Run(name, func(t *testing.T) {
			if got := publicConnectWarning(tc.db, tc.prod, tc.admin, tc.adminInDB); !strings.HasSuffix(got, tc.want) {
				t.Errorf("got %q; want it to end with %q", got, tc.want)
			}
		})
	}
}
