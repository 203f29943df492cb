package store

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend opens Store values on one test's fresh database.
type backend struct {
	name string
	// connect opens a new Store on the test's database; each call is
	// another Store value (another pool) on the same data, as a second
	// previewd process would have.
	connect func(ctx context.Context) (*Store, error)
}

// open connects, failing the test on error, and closes the Store when the
// test ends.
func (b backend) open(t *testing.T) *Store {
	t.Helper()
	s, err := b.connect(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing store: %v", err)
		}
	})
	return s
}

// forEachBackend runs fn as a subtest on SQLite (a file in t.TempDir),
// PostgreSQL directly, and PostgreSQL through PgBouncer in transaction
// mode, each on a fresh database.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqliteBackend(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresBackend(t, false)) })
	t.Run("pgbouncer", func(t *testing.T) { fn(t, postgresBackend(t, true)) })
}

func sqliteBackend(t *testing.T) backend {
	path := filepath.Join(t.TempDir(), "previewd.db")
	return backend{name: "sqlite", connect: func(ctx context.Context) (*Store, error) { return Open(ctx, path) }}
}

// postgresBackend makes a fresh database on the shared cluster, reached
// directly or through its PgBouncer.
func postgresBackend(t *testing.T, bouncer bool) backend {
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)
	b := backend{name: "postgres", connect: func(ctx context.Context) (*Store, error) { return OpenPostgres(ctx, c.AdminURLFor(db)) }}
	if bouncer {
		url := c.BouncerDSN(pgtest.AdminUser, c.Password(), db)
		b = backend{name: "pgbouncer", connect: func(ctx context.Context) (*Store, error) { return OpenPostgres(ctx, url) }}
	}
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// clock is a settable Store.now, so rows made in one test have distinct,
// known times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.UnixMilli(1_700_000_000_000).UTC()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) step(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func (s *Store) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(testCtx(t), s.q(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
