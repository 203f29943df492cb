package postgres

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// rehearsalTemplate makes a template database with users (1,000 rows,
// a legacy_id column) and orders (2,000 rows, an int total) and returns
// its name.
func (f *fixture) rehearsalTemplate() string {
	f.t.Helper()
	tmpl := f.c.NewDatabase(f.t)
	if err := f.c.Exec(f.ctx, tmpl, `
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, legacy_id int);
INSERT INTO users SELECT g, 'u' || g || '@example.com', g FROM generate_series(1, 1000) g;
CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users, total int);
INSERT INTO orders SELECT g, 1 + g % 1000, g FROM generate_series(1, 2000) g;
CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL);
INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true);`); err != nil {
		f.t.Fatal(err)
	}
	return tmpl
}

// sqlMigrate returns a migrate step that runs each of stmts, in order, as
// the environment's role on the connection it is given, as a migration
// tool would.
func sqlMigrate(t *testing.T, stmts ...string) func(context.Context, database.Conn) error {
	return func(ctx context.Context, c database.Conn) error {
		cfg, err := pgx.ParseConfig(c.Vars["DATABASE_URL"])
		if err != nil {
			return err
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s); err != nil {
				return fmt.Errorf("migration %q: %w", s, err)
			}
		}
		return nil
	}
}

func (f *fixture) rehearse(p *Provider, key string, o database.RehearseOptions, migrate func(context.Context, database.Conn) error) env.Rehearsal {
	f.t.Helper()
	f.ensure(p, key)
	rep, err := p.Rehearse(f.ctx, database.Target{Key: key}, o, migrate)
	if err != nil {
		f.t.Fatalf("Rehearse: %v", err)
	}
	name, _ := AuxName(key, AuxRehearsal)
	if f.exists("database", name) {
		f.t.Errorf("the rehearsal database %s is still there", name)
	}
	return rep
}

var (
	timesRE   = regexp.MustCompile(`[0-9]+(\.[0-9]+)? (ms|s)\b`)
	pidsRE    = regexp.MustCompile(`held by [0-9]+`)
	keyNameRE = regexp.MustCompile(`preview_[a-z0-9_]+|test_[0-9]+_[0-9]+`)
)

// golden renders the parts of a report that do not depend on timing and
// compares them with testdata/rehearsal/name.golden.
func golden(t *testing.T, name string, rep env.Rehearsal) {
	t.Helper()
	norm := func(s string) string {
		s = timesRE.ReplaceAllString(s, "<t>")
		s = pidsRE.ReplaceAllString(s, "held by <pid>")
		return keyNameRE.ReplaceAllString(s, "<name>")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "summary: %s\n", norm(rep.Summary()))
	fmt.Fprintf(&b, "from: %s\nstatements: %d\n", norm(rep.From), rep.StatementCount)
	// Slowest first is the report's order; times vary, so by text here.
	stmts := slices.Clone(rep.Statements)
	slices.SortFunc(stmts, func(a, b env.RehearsalStatement) int { return strings.Compare(a.Query, b.Query) })
	for _, s := range stmts {
		fmt.Fprintf(&b, "  %s | lock %s on %q | rows %d\n", norm(s.Query), s.Lock, s.Table, s.Rows)
	}
	b.WriteString("tables:\n")
	for _, tb := range rep.Tables {
		fmt.Fprintf(&b, "  %s rows=%d rewritten=%v dropped=%v lock=%s touched=%d\n", tb.Name, tb.Rows, tb.Rewritten, tb.Dropped, tb.Lock, tb.RowsTouched)
	}
	b.WriteString("findings:\n")
	for _, fd := range rep.Findings {
		fmt.Fprintf(&b, "  %s %s %s %s\n", fd.Kind, fd.Table, fd.Column, norm(fd.Detail))
	}
	if rep.Error != "" {
		fmt.Fprintf(&b, "error: %s\n", norm(firstLine(rep.Error)))
	}
	fmt.Fprintf(&b, "timedOut: %v\nwaitedFor: %s\n", rep.TimedOut, norm(rep.WaitedFor))
	got := b.String()
	path := filepath.Join("testdata", "rehearsal", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("report %s:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// TestRehearsalReports runs each kind of migration a reviewer must hear
// about against a clone of the template, through pg_stat_statements, and
// golden-tests the report.
func TestRehearsalReports(t *testing.T) {
	f := setup(t)
	tmpl := f.rehearsalTemplate()
	o := f.cfg(IsolationDatabase)
	o.Template = tmpl
	p := f.provider(o)
	ro := database.RehearseOptions{LockTimeout: 2 * time.Second, StatementTimeout: time.Minute}
	for _, tc := range []struct {
		name  string
		stmts []string
		check func(t *testing.T, rep env.Rehearsal)
	}{
		{"rewrite", []string{"ALTER TABLE orders ALTER COLUMN total TYPE bigint"}, func(t *testing.T, rep env.Rehearsal) {
			if !strings.Contains(rep.Summary(), "rewrites `orders` (2000 rows, ACCESS EXCLUSIVE") {
				t.Errorf("summary %q", rep.Summary())
			}
		}},
		{"not-null-default", []string{"ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new'"}, nil},
		{"not-null-volatile-default", []string{"ALTER TABLE orders ADD COLUMN token float8 NOT NULL DEFAULT random()"}, nil},
		{"drop-column", []string{"ALTER TABLE users DROP COLUMN legacy_id", "DROP TABLE goose_db_version"}, nil},
		{"set-not-null", []string{"UPDATE users SET legacy_id = 0 WHERE legacy_id IS NULL", "ALTER TABLE users ALTER COLUMN legacy_id SET NOT NULL"}, nil},
		{"create-index", []string{"CREATE INDEX orders_total ON orders (total)"}, nil},
		{"create-index-concurrently", []string{"CREATE INDEX CONCURRENTLY orders_total ON orders (total)"}, nil},
		{"failed", []string{"ALTER TABLE orders ADD COLUMN note text", "ALTER TABLE nope ADD COLUMN x int"}, func(t *testing.T, rep env.Rehearsal) {
			if !strings.Contains(rep.Error, `relation "nope" does not exist`) || !strings.Contains(rep.Error, "ALTER TABLE nope") {
				t.Errorf("error %q: want the statement and the error", rep.Error)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := f.rehearse(p, key("rh"), ro, sqlMigrate(t, tc.stmts...))
			golden(t, tc.name, rep)
			if tc.check != nil {
				tc.check(t, rep)
			}
		})
	}
	// The template is as it was.
	if n := scalar[int64](f, tmpl, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'legacy_id'"); n != 1 {
		t.Errorf("the template lost users.legacy_id")
	}
}

// TestRehearsalLockTimeout: a migration whose ALTER waits behind another
// transaction (the app's own, holding a read lock) runs into the
// rehearsal's lock_timeout; the report says so and names the lock.
func TestRehearsalLockTimeout(t *testing.T) {
	f := setup(t)
	o := f.cfg(IsolationDatabase)
	o.Template = f.rehearsalTemplate()
	p := f.provider(o)
	ro := database.RehearseOptions{LockTimeout: 2 * time.Second}
	migrate := func(ctx context.Context, c database.Conn) error {
		hold, err := pgx.Connect(ctx, c.Vars["DATABASE_URL"])
		if err != nil {
			return err
		}
		defer hold.Close(context.Background())
		if _, err := hold.Exec(ctx, "BEGIN; SELECT count(*) FROM orders"); err != nil {
			return err
		}
		return sqlMigrate(t, "ALTER TABLE orders ADD COLUMN flag boolean")(ctx, c)
	}
	rep := f.rehearse(p, key("rhlock"), ro, migrate)
	golden(t, "lock-timeout", rep)
	if !rep.TimedOut || !strings.Contains(rep.WaitedFor, "ACCESS EXCLUSIVE on `orders`, held by") {
		t.Errorf("timedOut %v, waitedFor %q", rep.TimedOut, rep.WaitedFor)
	}
	if got := rep.Judge([]env.FailOn{{Kind: env.FindingTimeout}}); len(got) != 2 {
		t.Errorf("Judge = %v; want failed and timeout", got)
	}
}

// TestRehearsalSampled: without pg_stat_statements the report comes from
// sampling and the catalog: a long rewrite is seen with its lock and
// time, and what the catalog shows is all there.
func TestRehearsalSampled(t *testing.T) {
	f := setup(t)
	o := f.cfg(IsolationDatabase)
	o.Template = f.rehearsalTemplate()
	p := f.provider(o)
	p.noStatements = true
	rep := f.rehearse(p, key("rhs"), database.RehearseOptions{}, sqlMigrate(t,
		"BEGIN",
		"ALTER TABLE orders ALTER COLUMN total TYPE bigint",
		"SELECT pg_sleep(0.3)",
		"ALTER TABLE users DROP COLUMN legacy_id",
		"COMMIT"))
	if rep.StatementCount != -1 || !strings.HasPrefix(rep.Observed, "locks and running statements sampled") || strings.Contains(rep.Observed, "failed") {
		t.Errorf("statementCount %d, observed %q", rep.StatementCount, rep.Observed)
	}
	var orders *env.RehearsalTable
	for i := range rep.Tables {
		if rep.Tables[i].Name == "orders" {
			orders = &rep.Tables[i]
		}
	}
	if orders == nil || !orders.Rewritten || orders.Lock != "AccessExclusiveLock" || orders.LockSeconds < 0.25 {
		t.Fatalf("orders: %+v; want rewritten, ACCESS EXCLUSIVE seen for the transaction (≥ 0.3 s)", orders)
	}
	if got := rep.Judge([]env.FailOn{{Kind: "drop"}, {Kind: env.FindingLock, Over: 200 * time.Millisecond}}); strings.Join(got, ",") != "drop,lock>200ms" {
		t.Errorf("Judge = %v", got)
	}
	sampled := false
	for _, s := range rep.Statements {
		sampled = sampled || strings.HasPrefix(s.Query, "SELECT pg_sleep")
	}
	if !sampled {
		t.Errorf("statements %+v: want the 0.3 s one sampled", rep.Statements)
	}
}

// TestRehearsalSchemaIsolation: in schema isolation the template's public
// schema becomes the environment's, which its role's search_path names,
// so unqualified migrations find the tables.
func TestRehearsalSchemaIsolation(t *testing.T) {
	f := setup(t)
	o := f.cfg(IsolationSchema)
	o.Template = f.rehearsalTemplate()
	p := f.provider(o)
	k := key("rhschema")
	rep := f.rehearse(p, k, database.RehearseOptions{}, sqlMigrate(t, "ALTER TABLE orders ALTER COLUMN total TYPE bigint"))
	if rep.Error != "" || len(rep.Findings) == 0 || rep.Findings[0].Kind != env.FindingRewrite || rep.Findings[0].Table != "orders" {
		t.Fatalf("report %+v", rep)
	}
	// The preview's own schema was not touched.
	name, _ := Name(k)
	if n := scalar[int64](f, f.db, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", name); n != 0 {
		t.Errorf("the preview's schema has %d tables; the rehearsal must not touch it", n)
	}
}

// TestRehearsalRefusesProduction: production is never the rehearsal's
// target.
func TestRehearsalRefusesProduction(t *testing.T) {
	f := setup(t)
	p := f.provider(f.cfg(IsolationDatabase))
	called := false
	_, err := p.Rehearse(f.ctx, database.Target{Key: env.ProductionKey, Production: true}, database.RehearseOptions{},
		func(context.Context, database.Conn) error { called = true; return nil })
	if !errors.Is(err, database.ErrProduction) || called {
		t.Fatalf("err %v, migrate called %v", err, called)
	}
	if items := p.RehearsalItems(database.Target{Key: env.ProductionKey}); len(items) != 0 {
		t.Errorf("items %v", items)
	}
	f.checkProduction()
}

func TestInferLock(t *testing.T) {
	for _, tc := range []struct{ q, mode, table string }{
		{"ALTER TABLE orders ALTER COLUMN total TYPE bigint", "AccessExclusiveLock", "orders"},
		{`alter table if exists only "Orders" add column x int`, "AccessExclusiveLock", "Orders"},
		{"ALTER TABLE public.orders VALIDATE CONSTRAINT c", "ShareUpdateExclusiveLock", "public.orders"},
		{"ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users", "ShareRowExclusiveLock", "orders"},
		{"CREATE INDEX i ON orders (total)", "ShareLock", "orders"},
		{"CREATE UNIQUE INDEX IF NOT EXISTS i ON ONLY orders USING btree (total)", "ShareLock", "orders"},
		{"CREATE INDEX CONCURRENTLY i ON orders (total)", "ShareUpdateExclusiveLock", "orders"},
		{"CREATE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()", "ShareRowExclusiveLock", "orders"},
		{"DROP TABLE IF EXISTS orders", "AccessExclusiveLock", "orders"},
		{"TRUNCATE TABLE orders", "AccessExclusiveLock", "orders"},
		{"LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE", "ShareRowExclusiveLock", "orders"},
		{"LOCK orders", "AccessExclusiveLock", "orders"},
		{"UPDATE orders SET total = 0", "RowExclusiveLock", "orders"},
		{"INSERT INTO orders VALUES (1)", "RowExclusiveLock", "orders"},
		{"DELETE FROM ONLY orders", "RowExclusiveLock", "orders"},
		{"REINDEX TABLE orders", "ShareLock", "orders"},
		{"-- a comment\nVACUUM FULL orders", "AccessExclusiveLock", "orders"},
		{"SELECT 1", "", ""},
		{"CREATE TABLE x (id int)", "", ""},
	} {
		mode, table := InferLock(tc.q)
		if mode != tc.mode || table != tc.table {
			t.Errorf("InferLock(%q) = %q, %q; want %q, %q", tc.q, mode, table, tc.mode, tc.table)
		}
	}
}

// TestInferLockOnServer runs statements in a transaction and compares the
// strongest lock PostgreSQL holds on the table with InferLock's.
func TestInferLockOnServer(t *testing.T) {
	f := setup(t)
	f.admin(`CREATE TABLE users (id int PRIMARY KEY); CREATE TABLE lk (id int PRIMARY KEY, total int, user_id int);
		CREATE FUNCTION lk_f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'`)
	conn, err := f.c.Connect(f.ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		"ALTER TABLE lk ALTER COLUMN total TYPE bigint",
		"ALTER TABLE lk ADD COLUMN s text NOT NULL DEFAULT 'x'",
		"ALTER TABLE lk ADD CONSTRAINT lk_fk FOREIGN KEY (user_id) REFERENCES users",
		"ALTER TABLE lk SET (fillfactor = 90)",
		"CREATE INDEX lk_i ON lk (total)",
		"CREATE TRIGGER lk_t BEFORE INSERT ON lk FOR EACH ROW EXECUTE FUNCTION lk_f()",
		"TRUNCATE TABLE lk",
		"UPDATE lk SET total = 0",
		"INSERT INTO lk VALUES (1)",
		"DELETE FROM lk",
		"LOCK TABLE lk IN SHARE MODE",
		"REINDEX TABLE lk",
		"DROP TABLE lk",
	} {
		want, _ := InferLock(q)
		var got string
		err := pgx.BeginFunc(f.ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(f.ctx, q); err != nil {
				return err
			}
			// The strongest lock this session holds on lk (a dropped
			// table has no pg_class row any more in this transaction).
			rows, err := tx.Query(f.ctx, `SELECT l.mode FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
				WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND (c.relname = 'lk' OR c.oid IS NULL)`)
			if err != nil {
				return err
			}
			modes, err := pgx.CollectRows(rows, pgx.RowTo[string])
			for _, m := range modes {
				if env.LockRank(m) > env.LockRank(got) {
					got = m
				}
			}
			if err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("%s: %v", q, err)
		}
		if got != want {
			t.Errorf("%s: PostgreSQL takes %s; InferLock says %s", q, got, want)
		}
	}
}

var errRollback = errors.New("rollback")

// TestRehearsalSchemaOnlyCopy: without a template the rehearsal database
// is a schema-only copy of production made from the catalog, with the
// migration tool's bookkeeping rows, so only the PR's new migrations run;
// production is untouched. In schema isolation production's public
// schema becomes the environment's.
func TestRehearsalSchemaOnlyCopy(t *testing.T) {
	for _, iso := range []string{IsolationDatabase, IsolationSchema} {
		t.Run(iso, func(t *testing.T) {
			f := setup(t)
			f.admin(`CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL);
				INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true)`)
			p := f.provider(f.cfg(iso))
			var applied, orders int64 = -1, -1
			migrate := func(ctx context.Context, c database.Conn) error {
				conn, err := pgx.Connect(ctx, c.Vars["DATABASE_URL"])
				if err != nil {
					return err
				}
				defer conn.Close(context.Background())
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM goose_db_version").Scan(&applied); err != nil {
					return err
				}
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&orders); err != nil {
					return err
				}
				_, err = conn.Exec(ctx, "ALTER TABLE orders DROP COLUMN total")
				return err
			}
			rep := f.rehearse(p, key("rhcopy"), database.RehearseOptions{}, migrate)
			if rep.Error != "" || !strings.HasPrefix(rep.From, "a schema-only copy of production's database") {
				t.Fatalf("report %+v", rep)
			}
			if applied != 3 || orders != 0 {
				t.Errorf("the copy had %d bookkeeping rows (want 3) and %d orders (want 0: schema only)", applied, orders)
			}
			if len(rep.Findings) == 0 || rep.Findings[0].Kind != env.FindingDropColumn || rep.Findings[0].Column != "total" {
				t.Errorf("findings %+v", rep.Findings)
			}
			f.checkProduction()
			if n := scalar[int64](f, f.db, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND column_name = 'total'"); n != 1 {
				t.Error("production lost orders.total")
			}
		})
	}
}
