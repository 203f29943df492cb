package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestAdminPooled runs two providers (two previewd processes) whose
// adminURL goes through PgBouncer in transaction mode (one server
// connection per pool, so both share it), each doing Ensure and Drop. With
// pgx's default statement cache the second fails with `prepared statement
// "stmtcache_…" already exists`; with AdminPooled neither does. (pgx's
// simple protocol passes this test too; exec mode keeps the parameters
// bound by the server.) Database isolation refuses AdminPooled: its
// session advisory lock would not survive transaction pooling.
func TestAdminPooled(t *testing.T) {
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		t.Run(iso, func(t *testing.T) {
			f := setup(t)
			o := f.cfg(iso)
			if iso == IsolationDatabase {
				o.AdminPooled = true
				if p, err := New(f.ctx, o); err == nil || !strings.Contains(err.Error(), "session advisory lock") {
					if p != nil {
						p.Close()
					}
					t.Fatalf("New with AdminPooled in database isolation: %v; want a refusal naming the session lock", err)
				}
				return
			}
			o.AdminURL = f.c.BouncerDSN(pgtest.AdminUser, f.c.Password(), f.db)
			o.AppHost = f.c.BouncerHostPort()
			o.AdminPooled = true
			a, b := f.provider(o), f.provider(o)
			for round := range 2 {
				for i, p := range []*Provider{a, b} {
					k := key("pooled")
					c, err := p.Ensure(f.ctx, database.Target{Key: k})
					if err != nil {
						t.Fatalf("round %d, provider %d: Ensure: %v", round, i, err)
					}
					// The environment works through PgBouncer.
					conn := connect(f.ctx, t, c.Vars["DATABASE_URL"])
					if code := sqlState(f.ctx, conn, "CREATE TABLE t (id int)"); code != "" {
						t.Fatalf("round %d, provider %d: creating a table: %s", round, i, code)
					}
					conn.Close(f.ctx)
					if err := p.Drop(f.ctx, p.Items(database.Target{Key: k})); err != nil {
						t.Fatalf("round %d, provider %d: Drop: %v", round, i, err)
					}
					name := mustName(t, k)
					for _, kind := range []string{"role", "schema", "database"} {
						if f.exists(kind, name) {
							t.Fatalf("round %d, provider %d: %s %s left after Drop", round, i, kind, name)
						}
					}
				}
			}
		})
	}
}

// TestAdminPooledMode: AdminPooled selects pgx's exec mode (unnamed
// statements, one round trip), which PgBouncer's transaction mode keeps;
// without it the admin pool caches named statements.
func TestAdminPooledMode(t *testing.T) {
	for name, tc := range map[string]struct {
		pooled bool
		want   pgx.QueryExecMode
	}{
		"direct": {false, pgx.QueryExecModeCacheStatement},
		"pooled": {true, pgx.QueryExecModeExec},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := New(t.Context(), Options{AdminURL: "postgres://u@127.0.0.1:1/db", PasswordSecret: []byte("s"), AdminPooled: tc.pooled})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if got := p.adminCfg.DefaultQueryExecMode; got != tc.want {
				t.Fatalf("exec mode %v; want %v", got, tc.want)
			}
		})
	}
}

// TestSessionLockThroughPooler shows why database isolation refuses
// AdminPooled: through PgBouncer in transaction mode (one server
// connection) a session advisory lock taken by one client is granted again
// to another client, which gets the same server session, so
// withSessionLock would exclude nobody (with more server connections its
// unlock may run on another session and leave the lock held). The
// transaction-scoped lock schema isolation uses does exclude.
func TestSessionLockThroughPooler(t *testing.T) {
	f := setup(t)
	url := f.c.BouncerDSN(pgtest.AdminUser, f.c.Password(), f.db)
	a, b := connect(f.ctx, t, url), connect(f.ctx, t, url)
	var got bool
	if _, err := a.Exec(f.ctx, "SELECT pg_advisory_lock($1, 1)", int32(lockClass)); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(f.ctx, "SELECT pg_try_advisory_lock($1, 1)", int32(lockClass)).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !got {
		t.Fatal("the second client did not get the first one's session lock; the pooler kept sessions apart")
	}
	// Leave the server session as it was: both grants released.
	for range 2 {
		if _, err := a.Exec(f.ctx, "SELECT pg_advisory_unlock($1, 1)", int32(lockClass)); err != nil {
			t.Fatal(err)
		}
	}

	// A transaction pins its server connection: the other client waits
	// for one and cannot take the lock meanwhile.
	tx, err := a.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(f.ctx, "SELECT pg_advisory_xact_lock($1, 1)", int32(lockClass)); err != nil {
		t.Fatal(err)
	}
	direct := connect(f.ctx, t, f.c.AdminURLFor(f.db))
	if err := direct.QueryRow(f.ctx, "SELECT pg_try_advisory_xact_lock($1, 1)", int32(lockClass)).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got {
		t.Fatal("a transaction lock taken through the pooler was not held")
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
}
