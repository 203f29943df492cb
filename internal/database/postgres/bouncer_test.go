package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// TestBouncerRaceReference reproduces the reference setup's bug: one shared
// role, `SET search_path` per migration, PgBouncer in transaction mode with
// one server connection. SET is session state, the pooled server connection
// is shared, so one environment's migration creates its table in the other
// environment's schema, and every statement succeeds. The interleaving is
// explicit, so the result is deterministic.
func TestBouncerRaceReference(t *testing.T) {
	f := setup(t)
	f.admin(`CREATE ROLE ref_app LOGIN PASSWORD 'ref-pass';
		CREATE SCHEMA ref_a AUTHORIZATION ref_app; CREATE SCHEMA ref_b AUTHORIZATION ref_app`)
	t.Cleanup(func() {
		f.c.Exec(context.Background(), f.db, "DROP SCHEMA ref_a, ref_b CASCADE; DROP OWNED BY ref_app; DROP ROLE ref_app")
	})
	url := f.c.BouncerDSN("ref_app", "ref-pass", f.db)
	a, b := connect(f.ctx, t, url), connect(f.ctx, t, url)

	// migrate.ts for PR a and PR b, interleaved as two CI jobs would.
	steps := []struct {
		conn *pgx.Conn
		sql  string
	}{
		{a, "SET search_path TO ref_a"},
		{b, "SET search_path TO ref_b"},
		{a, "CREATE TABLE items_a (id int)"},
		{b, "CREATE TABLE items_b (id int)"},
		{a, "SET search_path TO ref_a"},
		{b, "SET search_path TO ref_b"},
		{b, "CREATE TABLE users_b (id int)"},
		{a, "CREATE TABLE users_a (id int)"},
	}
	for _, s := range steps {
		if code := sqlState(f.ctx, s.conn, s.sql); code != "" {
			t.Fatalf("%s: %s", s.sql, code) // the bug is silent: nothing fails
		}
	}
	wrong := misplaced(t, f, map[string]string{"items_a": "ref_a", "items_b": "ref_b", "users_a": "ref_a", "users_b": "ref_b"})
	if len(wrong) == 0 {
		t.Fatal("the reference setup's race did not reproduce: every table is in its schema")
	}
	t.Logf("reference setup through PgBouncer: %s", strings.Join(wrong, "; "))
}

// misplaced returns "table in schema, want schema" for each table that is
// not (only) where want says.
func misplaced(t *testing.T, f *fixture, want map[string]string) []string {
	t.Helper()
	conn, err := f.c.Connect(f.ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(f.ctx)
	var wrong []string
	for table, schema := range want {
		rows, err := conn.Query(f.ctx, "SELECT schemaname::text FROM pg_tables WHERE tablename = $1", table)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != schema {
			wrong = append(wrong, fmt.Sprintf("%s in %v, want %s", table, got, schema))
		}
	}
	return wrong
}

// TestBouncerNoRace shows previewd's way: each environment has its own
// role whose search_path is set on the role. Several environments migrate
// concurrently through PgBouncer (one server connection per pool), two
// clients each, and every table lands in its own schema. Then production
// and preview clients run 10,000 interleaved queries through PgBouncer and
// each always sees its own schema.
func TestBouncerNoRace(t *testing.T) {
	f := setup(t)
	cfg := f.cfg(IsolationSchema)
	cfg.AppHost = f.c.BouncerHostPort()
	p := f.provider(cfg)
	const envs, clients, tables = 4, 2, 6
	keys := make([]string, envs)
	conns := make([]database.Conn, envs)
	for i := range keys {
		keys[i] = key("race")
		conns[i] = f.ensure(p, keys[i])
	}

	var wg sync.WaitGroup
	errs := make(chan error, envs*clients)
	want := map[string]string{}
	for i := range envs {
		for c := range clients {
			name := mustName(t, keys[i])
			for j := range tables {
				want[fmt.Sprintf("m_%d_%d_%d", i, c, j)] = name
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn := connect(f.ctx, t, conns[i].Vars["DATABASE_URL"])
				for j := range tables {
					tbl := fmt.Sprintf("m_%d_%d_%d", i, c, j)
					// No SET: the app relies on the role's search_path.
					if _, err := conn.Exec(f.ctx, "CREATE TABLE "+tbl+" (id serial PRIMARY KEY, v text); INSERT INTO "+tbl+" (v) VALUES ('x')"); err != nil {
						errs <- fmt.Errorf("%s: %w", tbl, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if wrong := misplaced(t, f, want); len(wrong) > 0 {
		t.Fatalf("tables in the wrong schema: %s", strings.Join(wrong, "; "))
	}
	if n := scalar[int64](f, f.db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 1 {
		t.Fatalf("public has %d tables; want only production's", n)
	}

	// 10,000 interleaved queries: production (admin, schema public) and
	// every environment, two clients each, all through PgBouncer.
	prod, err := p.Ensure(f.ctx, database.Target{Key: env.ProductionKey, Production: true})
	if err != nil {
		t.Fatal(err)
	}
	type client struct{ url, user, schema string }
	var cls []client
	for c := 0; c < clients; c++ {
		cls = append(cls, client{prod.Vars["DATABASE_URL"], "admin", "public"})
		for i := range envs {
			n := mustName(t, keys[i])
			cls = append(cls, client{conns[i].Vars["DATABASE_URL"], n, n})
		}
	}
	const total = 10000
	var next, bad atomic.Int64
	var pidsMu sync.Mutex
	pids := map[string]map[int32]bool{}
	for _, cl := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := connect(f.ctx, t, cl.url)
			for next.Add(1) <= total {
				var schema, user string
				var pid int32
				if err := conn.QueryRow(f.ctx, "SELECT current_schema(), current_user, pg_backend_pid()").Scan(&schema, &user, &pid); err != nil {
					t.Error(err)
					return
				}
				if schema != cl.schema || user != cl.user {
					if bad.Add(1) <= 5 {
						t.Errorf("client of %s saw schema %s as %s", cl.schema, schema, user)
					}
				}
				pidsMu.Lock()
				if pids[user] == nil {
					pids[user] = map[int32]bool{}
				}
				pids[user][pid] = true
				pidsMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d of %d queries saw another environment's schema", bad.Load(), total)
	}
	// Pooling really happened: each role's two clients shared one server
	// connection.
	for user, set := range pids {
		if len(set) != 1 {
			t.Errorf("%s used %d server connections; want 1 (pool size 1)", user, len(set))
		}
	}
	f.checkProduction()
}
