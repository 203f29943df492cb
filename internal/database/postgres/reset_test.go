package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// app is a stand-in for an environment's app: it reads its table through
// the URL it was given (PgBouncer in transaction mode) every few
// milliseconds, reconnecting after an error as a pool would, and records
// every query.
type app struct {
	url    string
	mu     sync.Mutex
	seen   []query
	stop   chan struct{}
	done   chan struct{}
	period time.Duration
}

type query struct {
	start, end time.Time
	value      string
	err        error
}

func startApp(t *testing.T, url string) *app {
	a := &app{url: url, stop: make(chan struct{}), done: make(chan struct{}), period: 2 * time.Millisecond}
	go a.run()
	t.Cleanup(a.halt)
	return a
}

func (a *app) run() {
	defer close(a.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-a.stop:
			return
		case <-time.After(a.period):
		}
		q := query{start: time.Now()}
		if conn == nil {
			cfg, err := pgx.ParseConfig(a.url)
			if err == nil {
				cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
				cfg.ConnectTimeout = 5 * time.Second
				conn, err = pgx.ConnectConfig(ctx, cfg)
			}
			if err != nil {
				conn = nil
				q.err, q.end = err, time.Now()
				a.record(q)
				continue
			}
		}
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		q.err = conn.QueryRow(qctx, "SELECT v FROM items").Scan(&q.value)
		qcancel()
		q.end = time.Now()
		if q.err != nil {
			conn.Close(context.Background())
			conn = nil
		}
		a.record(q)
	}
}

func (a *app) record(q query) {
	a.mu.Lock()
	a.seen = append(a.seen, q)
	a.mu.Unlock()
}

func (a *app) halt() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

func (a *app) queries() []query {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]query(nil), a.seen...)
}

// waitFor waits until a query that started after since saw value.
func (a *app) waitFor(t *testing.T, since time.Time, value string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, q := range a.queries() {
			if q.start.After(since) && q.err == nil && q.value == value {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the app never saw %q after %s", value, since.Format(time.StampMilli))
}

// execAs runs sql through url (as its role).
func execAs(ctx context.Context, url, sql string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// fill is the "migrate and seed" of these tests: one table with one row.
func fill(value string) func(context.Context, database.Conn) error {
	return func(ctx context.Context, c database.Conn) error {
		return execAs(ctx, c.Vars["DATABASE_URL"], fmt.Sprintf("CREATE TABLE items (v text); INSERT INTO items VALUES ('%s')", value))
	}
}

// resetFixture is an environment (through PgBouncer) holding "old".
func resetFixture(t *testing.T, isolation string, hook func(context.Context, string, string) error) (*fixture, *Provider, string, database.Conn) {
	f := setup(t)
	cfg := f.cfg(isolation)
	cfg.AppHost = f.c.BouncerHostPort()
	cfg.Hook = hook
	cfg.Instance = "test"
	p := f.provider(cfg)
	k := key("reset")
	c := f.ensure(p, k)
	if err := fill("old")(f.ctx, c); err != nil {
		t.Fatal(err)
	}
	return f, p, k, c
}

// auxLeft returns the reset's objects that exist.
func auxLeft(f *fixture, p *Provider, k string) []string {
	var out []string
	for _, it := range p.ResetItems(database.Target{Key: k}) {
		kind := map[env.ItemKind]string{env.ItemRole: "role", env.ItemSchema: "schema", env.ItemDatabase: "database"}[it.Kind]
		if f.exists(kind, it.Name) {
			out = append(out, kind+" "+it.Name)
		}
	}
	return out
}

// TestResetSchemaWhileServing: in schema mode, an app querying through
// PgBouncer every 2 ms while the environment is reset never sees an
// error, sees the old data until the swap and the fresh data from the
// first query after Reset returns, with the same variables.
func TestResetSchemaWhileServing(t *testing.T) {
	f, p, k, cur := resetFixture(t, IsolationSchema, nil)
	name := mustName(t, k)
	a := startApp(t, cur.Vars["DATABASE_URL"])
	a.waitFor(t, time.Time{}, "old")

	var during time.Time
	got, err := p.Reset(f.ctx, database.Target{Key: k}, func(ctx context.Context, next database.Conn) error {
		if next.Vars["DATABASE_SCHEMA"] != name+"$next" || next.Vars["DATABASE_URL"] == cur.Vars["DATABASE_URL"] {
			return fmt.Errorf("prepare got %v; want the fresh schema %s$next as its own role", next.Vars["DATABASE_SCHEMA"], name)
		}
		if err := fill("new")(ctx, next); err != nil {
			return err
		}
		during = time.Now()
		a.waitFor(t, during, "old") // the old schema still serves
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	swapped := time.Now()
	a.waitFor(t, swapped, "new")
	a.halt()
	if fmt.Sprint(got.Vars) != fmt.Sprint(cur.Vars) {
		t.Errorf("Reset returned other variables than Ensure")
	}
	qs := a.queries()
	for _, q := range qs {
		if q.err != nil {
			t.Errorf("query at %s failed: %v", q.start.Format(time.StampMilli), q.err)
		}
		if q.start.After(swapped) && q.value != "new" {
			t.Errorf("query at %s, after Reset returned, saw %q", q.start.Format(time.StampMilli), q.value)
		}
	}
	t.Logf("%d queries, none failed", len(qs))
	if left := auxLeft(f, p, k); len(left) > 0 {
		t.Errorf("left after the reset: %v", left)
	}
	if owner := scalar[string](f, f.db, "SELECT tableowner::text FROM pg_tables WHERE schemaname = $1 AND tablename = 'items'", name); owner != name {
		t.Errorf("items is owned by %s; want %s", owner, name)
	}
	// The environment's role can still change its schema (migrate again).
	if err := execAs(f.ctx, cur.Vars["DATABASE_URL"], "ALTER TABLE items ADD COLUMN n int; CREATE TABLE more (id int)"); err != nil {
		t.Errorf("migrating after the reset: %v", err)
	}
	f.checkProduction()
}

// connError reports whether err is what an app sees when its database
// connection is cut or refused (directly or through PgBouncer), not a
// failing query.
func connError(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", // terminating connection due to administrator command
			"55000", // database does not allow connections
			"3D000", // database does not exist (PgBouncer's login)
			"08P01", // PgBouncer: server conn crashed?, cannot connect
			"08006", "08003", "08000":
			return true
		}
		return false
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.As(err, new(*pgconn.ConnectError)) ||
		errors.Is(err, pgx.ErrTxClosed) || isClosed(err)
}

func isClosed(err error) bool {
	s := err.Error()
	for _, m := range []string{"unexpected EOF", "conn closed", "connection reset", "broken pipe", "failed to receive message", "closed"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// TestResetDatabaseWhileServing: in database mode the swap cuts the app's
// connections once; the queries that fail are connection errors only,
// within a short window, and the app's next connection sees the fresh
// database with the same URL.
func TestResetDatabaseWhileServing(t *testing.T) {
	var swapStart, swapEnd time.Time
	hook := func(_ context.Context, stage, _ string) error {
		switch stage {
		case "reset-swap":
			swapStart = time.Now()
		case "reset-swapped":
			swapEnd = time.Now()
		}
		return nil
	}
	f, p, k, cur := resetFixture(t, IsolationDatabase, hook)
	a := startApp(t, cur.Vars["DATABASE_URL"])
	a.waitFor(t, time.Time{}, "old")
	start := time.Now()
	got, err := p.Reset(f.ctx, database.Target{Key: k}, func(ctx context.Context, next database.Conn) error {
		if next.Name != mustName(t, k)+"$next" {
			return fmt.Errorf("prepare got database %s", next.Name)
		}
		return fill("new")(ctx, next)
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	swapped := time.Now()
	a.waitFor(t, swapped, "new")
	a.halt()
	if fmt.Sprint(got.Vars) != fmt.Sprint(cur.Vars) {
		t.Errorf("Reset returned other variables than Ensure")
	}
	var failed []query
	for _, q := range a.queries() {
		if q.err != nil {
			failed = append(failed, q)
			if !connError(q.err) {
				t.Errorf("query at %s failed with more than a connection error: %v", q.start.Format(time.StampMilli), q.err)
			}
		}
	}
	// The first query after the cut fails; the app's next connection
	// works (once PgBouncer reaches the fresh database).
	var window time.Duration
	if len(failed) > 0 {
		window = failed[len(failed)-1].end.Sub(failed[0].start)
		for _, q := range failed {
			t.Logf("failed at %s: %v", q.start.Format(time.StampMilli), q.err)
		}
	}
	var slowest time.Duration
	for _, q := range a.queries() {
		slowest = max(slowest, q.end.Sub(q.start))
	}
	t.Logf("reset took %s, the swap %s; %d of %d queries failed, all within %s; the slowest query took %s",
		took.Round(time.Millisecond), swapEnd.Sub(swapStart).Round(time.Millisecond), len(failed), len(a.queries()), window.Round(time.Millisecond), slowest.Round(time.Millisecond))
	if slowest > 2*time.Second {
		t.Errorf("a query took %s; want at most 2s", slowest)
	}
	if window > 2*time.Second {
		t.Errorf("the app's queries failed for %s; want at most 2s", window)
	}
	if left := auxLeft(f, p, k); len(left) > 0 {
		t.Errorf("left after the reset: %v", left)
	}
	f.checkProduction()
}

// TestResetPrepareFails: a prepare that fails (or whose context ends)
// leaves the current data serving and nothing of the fresh one, in both
// modes.
func TestResetPrepareFails(t *testing.T) {
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		for _, how := range []string{"error", "cancel"} {
			t.Run(iso+"/"+how, func(t *testing.T) {
				f, p, k, cur := resetFixture(t, iso, nil)
				ctx, cancel := context.WithCancel(f.ctx)
				defer cancel()
				boom := errors.New("migration 3 failed")
				_, err := p.Reset(ctx, database.Target{Key: k}, func(ctx context.Context, next database.Conn) error {
					if err := fill("new")(ctx, next); err != nil {
						return err
					}
					if how == "cancel" {
						cancel()
						return ctx.Err()
					}
					return boom
				})
				if how == "error" && !errors.Is(err, boom) || how == "cancel" && !errors.Is(err, context.Canceled) {
					t.Fatalf("Reset = %v; want the prepare's error", err)
				}
				var v string
				c := connect(f.ctx, t, cur.Vars["DATABASE_URL"])
				if err := c.QueryRow(f.ctx, "SELECT v FROM items").Scan(&v); err != nil || v != "old" {
					t.Errorf("after a failed reset the app reads %q, %v; want old", v, err)
				}
				if left := auxLeft(f, p, k); len(left) > 0 {
					t.Errorf("left after a failed reset: %v", left)
				}
			})
		}
	}
}

// TestResetCrash: a reset whose process is killed (SIGKILL) at any step leaves objects the next Reset
// removes, or Drop of ResetItems, or Collect once the environment is
// gone; the environment keeps serving the old or the new data, never
// none.
func TestResetCrash(t *testing.T) {
	stages := map[string][]string{
		IsolationSchema:   {"reset-next", "reset-swap", "reset-swapped"},
		IsolationDatabase: {"reset-next", "reset-swap", "reset-closed", "reset-swapped"},
	}
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		for _, stage := range stages[iso] {
			for _, then := range []string{"reset", "drop", "collect"} {
				t.Run(iso+"/"+stage+"/"+then, func(t *testing.T) {
					f, p, k, cur := resetFixture(t, iso, nil)
					tg := database.Target{Key: k}
					o := f.cfg(iso)
					o.Instance = "test"
					crashOp(t, o, k, stage, "reset", 0) // 0: it closes the database before the swap
					if len(auxLeft(f, p, k)) == 0 {
						t.Fatalf("the crash at %s left nothing; the test tests nothing", stage)
					}
					want := "old"
					if stage == "reset-swapped" {
						want = "new"
					}
					switch then {
					case "reset":
						if _, err := p.Reset(f.ctx, tg, fill("newer")); err != nil {
							t.Fatal(err)
						}
						want = "newer"
					case "drop":
						if err := p.Drop(f.ctx, p.ResetItems(tg)); err != nil {
							t.Fatal(err)
						}
						// The reconciler's next Ensure repairs a database
						// left refusing connections (reset-closed).
						f.ensure(p, k)
					case "collect":
						removed, err := p.Collect(f.ctx, map[string]bool{})
						if err != nil {
							t.Fatal(err)
						}
						t.Logf("collected %v", removed)
						if left := auxLeft(f, p, k); len(left) > 0 {
							t.Fatalf("left after Collect: %v", left)
						}
						f.checkProduction()
						return // the environment is gone too
					}
					if left := auxLeft(f, p, k); len(left) > 0 {
						t.Errorf("left after %s: %v", then, left)
					}
					var v string
					c := connect(f.ctx, t, cur.Vars["DATABASE_URL"])
					if err := c.QueryRow(f.ctx, "SELECT v FROM items").Scan(&v); err != nil || v != want {
						t.Errorf("the app reads %q, %v; want %s", v, err, want)
					}
					f.checkProduction()
				})
			}
		}
	}
}

// TestResetRefusesProduction: production is never reset, by key or by
// flag, and has no reset items.
func TestResetRefusesProduction(t *testing.T) {
	f := setup(t)
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		p := f.provider(f.cfg(iso))
		for _, tg := range []database.Target{{Key: env.ProductionKey}, {Key: "x", Production: true}} {
			called := false
			_, err := p.Reset(f.ctx, tg, func(context.Context, database.Conn) error { called = true; return nil })
			if !errors.Is(err, database.ErrProduction) || called {
				t.Errorf("%s: Reset(%+v) = %v (prepare called %v); want ErrProduction", iso, tg, err, called)
			}
			if items := p.ResetItems(tg); len(items) > 0 {
				t.Errorf("%s: ResetItems(%+v) = %v; want none", iso, tg, items)
			}
		}
	}
	f.checkProduction()
}

// BenchmarkResetSchema measures a reset of a schema-tier preview with a
// one-table migration as prepare (ms-reset, median) and the migration
// alone, as the role, through the same path (ms-migrate): the goal is
// ms-reset ≤ 100 ms + ms-migrate.
func BenchmarkResetSchema(b *testing.B) {
	f := setup(b)
	p := f.provider(f.cfg(IsolationSchema))
	k := key("bench-r")
	c := f.ensure(p, k)
	migrate(f.ctx, b, c.Vars["DATABASE_URL"])
	var total, mig []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		var m time.Duration
		if _, err := p.Reset(f.ctx, database.Target{Key: k}, func(ctx context.Context, next database.Conn) error {
			ms := time.Now()
			migrate(ctx, b, next.Vars["DATABASE_URL"])
			m = time.Since(ms)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		total = append(total, time.Since(start))
		mig = append(mig, m)
	}
	b.StopTimer()
	reportMedian(b, total, "ms-reset")
	reportMedian(b, mig, "ms-migrate")
}

// TestResetDatabaseBusyCatalog: while another session holds pg_database
// (as CREATE DATABASE of another environment does while it copies), the
// swap waits without making the server's logins queue behind it, and
// finishes once pg_database is free.
func TestResetDatabaseBusyCatalog(t *testing.T) {
	// A login queued behind the swap ends after the release; one that is
	// not ends before it, with two thirds of hold to spare for a slow
	// login on a loaded machine.
	const hold = 3 * time.Second
	var released, loggedIn time.Time
	var login time.Duration
	var loginErr error
	var wg sync.WaitGroup
	var f *fixture
	hook := func(ctx context.Context, stage, _ string) error {
		if stage != "reset-swap" {
			return nil
		}
		blocker, err := f.c.Connect(ctx, f.db)
		if err != nil {
			return err
		}
		if _, err := blocker.Exec(ctx, "BEGIN; LOCK TABLE pg_catalog.pg_database IN ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			time.Sleep(hold) // the other session's work, not a wait for a condition
			released = time.Now()
			blocker.Exec(context.Background(), "COMMIT")
			blocker.Close(context.Background())
		}()
		go func() {
			defer wg.Done()
			time.Sleep(hold / 3)
			start := time.Now()
			c, err := f.c.Connect(context.Background(), f.db)
			login, loginErr = time.Since(start), err
			loggedIn = time.Now()
			if err == nil {
				c.Close(context.Background())
			}
		}()
		return nil
	}
	f, p, k, cur := resetFixture(t, IsolationDatabase, hook)
	if _, err := p.Reset(f.ctx, database.Target{Key: k}, fill("new")); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	wg.Wait()
	if done.Before(released) {
		t.Errorf("the swap finished while pg_database was held")
	}
	if loginErr != nil || !loggedIn.Before(released) {
		t.Errorf("a login during the wait took %s (%v) and ended %s after pg_database was released; want it not queued behind the swap", login, loginErr, loggedIn.Sub(released))
	}
	t.Logf("a login while the swap waited took %s", login.Round(time.Millisecond))
	var v string
	c := connect(f.ctx, t, cur.Vars["DATABASE_URL"])
	if err := c.QueryRow(f.ctx, "SELECT v FROM items").Scan(&v); err != nil || v != "new" {
		t.Errorf("after the reset the app reads %q, %v; want new", v, err)
	}
}
