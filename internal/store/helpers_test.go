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
	// open returns a new Store on the test's database; each call is
	// another Store value (another pool) on the same data, as a second
	// previewd process would have. It is closed when the test ends.
	open func(t *testing.T) *Store
}

// forEachBackend runs fn as a subtest on SQLite (a file in t.TempDir),
// PostgreSQL directly, and PostgreSQL through PgBouncer in transaction
// mode, each on a fresh database.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "previewd.db")
		fn(t, backend{name: "sqlite", open: func(t *testing.T) *Store {
			t.Helper()
			return keep(t, func(ctx context.Context) (*Store, error) { return Open(ctx, path) })
		}})
	})
	for _, bouncer := range []bool{false, true} {
		name := "postgres"
		if bouncer {
			name = "pgbouncer"
		}
		t.Run(name, func(t *testing.T) {
			c := pgtest.Shared(t)
			db := c.NewDatabase(t)
			url := c.AdminURLFor(db)
			if bouncer {
				url = c.BouncerDSN(pgtest.AdminUser, c.Password(), db)
			}
			fn(t, backend{name: name, open: func(t *testing.T) *Store {
				t.Helper()
				return keep(t, func(ctx context.Context) (*Store, error) { return OpenPostgres(ctx, url) })
			}})
		})
	}
}

func keep(t *testing.T, open func(context.Context) (*Store, error)) *Store {
	t.Helper()
	s, err := open(testCtx(t))
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
