package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/pgtest"
)

// legacySchema is the schema the store created before versioned
// migrations, verbatim; stores made then hold these tables and no
// schema_migrations.
const legacySchema = `
CREATE TABLE IF NOT EXISTS environments (
	key        TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	number     INTEGER NOT NULL DEFAULT 0,
	branch     TEXT NOT NULL DEFAULT '',
	sha        TEXT NOT NULL DEFAULT '',
	status     TEXT NOT NULL DEFAULT 'pending',
	message    TEXT NOT NULL DEFAULT '',
	url        TEXT NOT NULL DEFAULT '',
	database   TEXT NOT NULL DEFAULT '',
	failed_sha TEXT NOT NULL DEFAULT '',
	restarts   INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	ready_at   INTEGER,
	deleted_at INTEGER
);
CREATE TABLE IF NOT EXISTS inventory (
	key        TEXT NOT NULL,
	kind       TEXT NOT NULL,
	name       TEXT NOT NULL,
	data       TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (key, kind, name)
);
CREATE TABLE IF NOT EXISTS events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	key     TEXT NOT NULL,
	time    INTEGER NOT NULL,
	reason  TEXT NOT NULL,
	message TEXT NOT NULL,
	sha     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_key ON events (key, id);
`

// TestLegacySQLiteStore: a store file made by the code before versioned
// migrations (the first release's tables, or those plus the source column
// that code added on open) opens, keeps every row, is recorded at the
// version its tables hold and gets the later migrations; opening it again
// changes nothing.
func TestLegacySQLiteStore(t *testing.T) {
	for _, tc := range []struct {
		name       string
		withSource bool
	}{{"first release", false}, {"with source column", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			path := filepath.Join(t.TempDir(), "previewd.db")
			old, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			stmts := []string{legacySchema,
				`INSERT INTO environments (key, kind, number, branch, sha, status, message, url, failed_sha, restarts, created_at, updated_at, ready_at)
				 VALUES ('pr-3', 'pull_request', 3, 'fix', 'abc', 'ready', 'up', 'http://pr-3', 'bad', 2, 1000, 2000, 1500)`,
				`INSERT INTO inventory (key, kind, name, data, created_at) VALUES ('pr-3', 'pg-schema', 'pr_3', '{"x":1}', 1000)`,
				`INSERT INTO events (key, time, reason, message, sha) VALUES ('pr-3', 1200, 'Ready', 'ready at abc', 'abc')`,
			}
			if tc.withSource {
				stmts = append(stmts, `ALTER TABLE environments ADD COLUMN source TEXT NOT NULL DEFAULT ''`,
					`UPDATE environments SET source = '{"key":"pr-3","kind":"pull_request","number":3,"branch":"fix","sha":"abc"}'`)
			}
			for _, q := range stmts {
				if _, err := old.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}

			for round := 1; round <= 2; round++ {
				s, err := Open(ctx, path)
				if err != nil {
					t.Fatalf("open %d: %v", round, err)
				}
				if got := versions(t, s); !reflect.DeepEqual(got, []int{1, 2, 3, 4, 5, 6, 7, 8, 9}) {
					t.Errorf("open %d: schema_migrations = %v, want [1 2 3 4 5 6 7 8 9]", round, got)
				}
				r, err := s.GetRecord(ctx, "pr-3")
				if err != nil {
					t.Fatal(err)
				}
				if r.SHA != "abc" || r.Status != "ready" || r.URL != "http://pr-3" || r.FailedSHA != "bad" || r.Restarts != 2 ||
					r.CreatedAt.UnixMilli() != 1000 || r.ReadyAt == nil || r.ReadyAt.UnixMilli() != 1500 {
					t.Errorf("open %d: pr-3 = %+v", round, r)
				}
				switch {
				case round == 1 && tc.withSource != (r.Deployed != nil),
					round == 1 && r.Deployed != nil && r.Deployed.SHA != "abc",
					round == 2 && (r.Deployed == nil || r.Deployed.SHA != "def"): // written in round 1
					t.Errorf("open %d: Deployed = %+v", round, r.Deployed)
				}
				items, err := s.Items(ctx, "pr-3")
				if err != nil || !reflect.DeepEqual(items, []env.Item{{Kind: env.ItemSchema, Name: "pr_3", Data: []byte(`{"x":1}`)}}) {
					t.Errorf("open %d: items = %s, %v", round, items, err)
				}
				evs, err := s.Events(ctx, "pr-3", 10)
				if err != nil || len(evs) != 1 || evs[0].Message != "ready at abc" {
					t.Errorf("open %d: events = %+v, %v", round, evs, err)
				}
				// The source column is there either way.
				if err := s.Set(ctx, "pr-3", Update{Deployed: &env.Source{Key: "pr-3", SHA: "def"}}); err != nil {
					t.Errorf("open %d: %v", round, err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func versions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.db.QueryContext(testCtx(t), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrations: a new store gets every migration once, reopening applies
// nothing again, both dialects have the same versions, and a store whose
// schema is newer than this build is refused rather than written to.
func TestMigrations(t *testing.T) {
	lite, err := loadMigrations(sqliteDialect.name)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := loadMigrations(pgDialect.name)
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for i := range lite {
		want = append(want, lite[i].version)
		if i >= len(pg) || pg[i].name != lite[i].name {
			t.Errorf("migration %s has no PostgreSQL twin", lite[i].name)
		}
	}
	if len(pg) != len(lite) {
		t.Errorf("%d PostgreSQL migrations, %d SQLite ones", len(pg), len(lite))
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		if got := versions(t, s); !reflect.DeepEqual(got, want) {
			t.Errorf("new store at %v, want %v", got, want)
		}
		if got := versions(t, b.open(t)); !reflect.DeepEqual(got, want) {
			t.Errorf("reopened store at %v, want %v", got, want)
		}
		if _, err := s.db.ExecContext(testCtx(t), s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`), 9999); err != nil {
			t.Fatal(err)
		}
		newer, err := b.connect(testCtx(t))
		if err == nil {
			newer.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "newer than this previewd knows") {
			t.Errorf("opening a store at version 9999 = %v, want a refusal", err)
		}
	})
}

// TestConcurrentOpen: replicas starting at once against a new store all
// open it, and each migration is applied once.
func TestConcurrentOpen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		const n = 4
		stores := make([]*Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stores[i], errs[i] = b.connect(testCtx(t))
			}()
		}
		wg.Wait()
		for i, s := range stores {
			if errs[i] != nil {
				t.Fatalf("open %d: %v", i, errs[i])
			}
			t.Cleanup(func() { s.Close() })
		}
		migs, err := loadMigrations("sqlite")
		if err != nil {
			t.Fatal(err)
		}
		if got := versions(t, stores[0]); len(got) != len(migs) {
			t.Errorf("schema_migrations = %v after %d concurrent opens", got, n)
		}
		for i, s := range stores {
			if err := s.Upsert(testCtx(t), env.Source{Key: fmt.Sprint("k", i), Kind: env.KindBranch}); err != nil {
				t.Errorf("store %d: %v", i, err)
			}
		}
		if got := liveKeys(t, stores[0]); len(got) != n {
			t.Errorf("Live = %v, want %d environments", got, n)
		}
	})
}

// TestPostgresSchemaFromURL: the tables go where the URL's search_path
// points, so two stores in two schemas of one database are separate, each
// with its own migrations.
func TestPostgresSchemaFromURL(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)
	ctx := testCtx(t)
	if err := c.Exec(ctx, db, `CREATE SCHEMA one; CREATE SCHEMA two`); err != nil {
		t.Fatal(err)
	}
	open := func(schema string) *Store {
		return backend{connect: func(ctx context.Context) (*Store, error) {
			return OpenPostgres(ctx, c.AdminURLFor(db)+"&search_path="+schema)
		}}.open(t)
	}
	one, two := open("one"), open("two")
	if err := one.Upsert(ctx, env.Source{Key: "feat", Kind: env.KindBranch}); err != nil {
		t.Fatal(err)
	}
	if got := liveKeys(t, two); len(got) != 0 {
		t.Errorf("the store in schema two sees %v", got)
	}
	for schema, want := range map[string]int{"one": 4, "two": 4, "public": 0} {
		n := one.count(t, `SELECT count(*) FROM information_schema.tables WHERE table_schema = ?
			AND table_name IN ('environments', 'inventory', 'events', 'schema_migrations')`, schema)
		if n != want {
			t.Errorf("schema %s holds %d of the store's tables, want %d", schema, n, want)
		}
	}
}

// TestPostgresErrorsHidePassword: a store URL that does not parse or does
// not connect is reported without its password.
func TestPostgresErrorsHidePassword(t *testing.T) {
	for _, url := range []string{
		"postgres://previewd:s3cret@127.0.0.1:notaport/previewd",
		"postgres://previewd:s3cret@127.0.0.1:1/previewd?sslmode=disable&connect_timeout=2",
	} {
		s, err := OpenPostgres(testCtx(t), url)
		if err == nil {
			s.Close()
			t.Fatalf("OpenPostgres(%s) succeeded", url)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
}
