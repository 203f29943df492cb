package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		os.Exit(crashHelper())
	}
	os.Exit(pgtest.Main(m))
}

const testSecret = "test-secret-not-for-production"

// fixture is one test's cluster and "production" database, which holds a
// production table public.orders with prodRows rows.
type fixture struct {
	t   testing.TB
	c   *pgtest.Cluster
	db  string
	ctx context.Context
}

const prodRows = 3

func setup(t testing.TB) *fixture {
	t.Helper()
	c := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	f := &fixture{t: t, c: c, db: c.NewDatabase(t), ctx: ctx}
	f.admin(`CREATE TABLE public.orders (id int PRIMARY KEY, total numeric NOT NULL);
		INSERT INTO public.orders SELECT g, g * 10 FROM generate_series(1, 3) g;`)
	return f
}

// admin runs sql as admin in the production database.
func (f *fixture) admin(sql string, args ...any) {
	f.t.Helper()
	if err := f.c.Exec(f.ctx, f.db, sql, args...); err != nil {
		f.t.Fatalf("admin: %s: %v", sql, err)
	}
}

// scalar returns the single value sql yields, as admin in db.
func scalar[T any](f *fixture, db, sql string, args ...any) T {
	f.t.Helper()
	conn, err := f.c.Connect(f.ctx, db)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v T
	if err := conn.QueryRow(f.ctx, sql, args...).Scan(&v); err != nil {
		f.t.Fatalf("admin: %s: %v", sql, err)
	}
	return v
}

// checkProduction fails unless production's table still holds its rows.
func (f *fixture) checkProduction() {
	f.t.Helper()
	if n := scalar[int64](f, f.db, "SELECT count(*) FROM public.orders"); n != prodRows {
		f.t.Fatalf("production table has %d rows; want %d", n, prodRows)
	}
}

// cfg returns provider options for the fixture's database.
func (f *fixture) cfg(isolation string) Options {
	return Options{
		AdminURL:        f.c.AdminURLFor(f.db),
		Isolation:       isolation,
		ConnectionLimit: 5,
		PasswordSecret:  []byte(testSecret),
	}
}

// provider returns a provider for o; when the test ends it collects
// everything the test left (tests do not run in parallel) and closes.
func (f *fixture) provider(o Options) *Provider {
	f.t.Helper()
	p, err := New(f.ctx, o)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := p.Collect(ctx, nil); err != nil {
			f.t.Errorf("cleanup: %v", err)
		}
		p.Close()
	})
	return p
}

func (f *fixture) ensure(p *Provider, key string) database.Conn {
	f.t.Helper()
	c, err := p.Ensure(f.ctx, database.Target{Key: key})
	if err != nil {
		f.t.Fatalf("Ensure(%s): %v", key, err)
	}
	return c
}

// connect opens a connection to url using the simple protocol, which
// works through PgBouncer's transaction mode.
func connect(ctx context.Context, t testing.TB, url string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting to %s: %v", redact(url), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func redact(url string) string {
	if i, j := strings.Index(url, "://"), strings.LastIndex(url, "@"); i >= 0 && j > i {
		if k := strings.Index(url[i+3:j], ":"); k >= 0 {
			return url[:i+3+k+1] + "xxx" + url[j:]
		}
	}
	return url
}

// sqlState runs sql and returns its SQLSTATE ("" on success).
func sqlState(ctx context.Context, conn *pgx.Conn, sql string) string {
	_, err := conn.Exec(ctx, sql)
	if err == nil {
		return ""
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return err.Error()
}

// exists reports whether a role, schema (in db) or database named name
// exists.
func (f *fixture) exists(kind, name string) bool {
	f.t.Helper()
	q := map[string]string{
		"role":     "SELECT count(*) FROM pg_roles WHERE rolname = $1",
		"schema":   "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
		"database": "SELECT count(*) FROM pg_database WHERE datname = $1",
	}[kind]
	return scalar[int64](f, f.db, q, name) > 0
}

var keySeq atomic.Int64

// key returns a fresh key for this process, so tests never share objects.
func key(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid()%100000, keySeq.Add(1))
}
