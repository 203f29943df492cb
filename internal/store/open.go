package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// dialect is what differs between the backends; the queries are shared,
// written with ? placeholders.
type dialect struct {
	// name is the migrations directory.
	name string
	// dollar rewrites ? placeholders to $1, $2, ...
	dollar bool
	// migrateLock, if set, is run first in the migration transaction and
	// holds until it ends.
	migrateLock string
	// keyLock, if set, takes a lock on one environment's key (its only
	// argument) until the transaction ends. SQLite needs none: its one
	// connection and BEGIN IMMEDIATE serialise every write.
	keyLock string
	// baseline reads the version of a store made before versioned
	// migrations.
	baseline func(context.Context, *sql.Tx) (int, error)
}

// lockClass is the first key of the store's two-key advisory locks
// ("pvst"); the migration lock is a one-key lock, a separate space.
const (
	lockClass     = 0x70767374
	migrateLockID = 0x70767374_6d696772 // "pvstmigr"
)

var (
	sqliteDialect = dialect{name: "sqlite", baseline: sqliteBaseline}
	pgDialect     = dialect{
		name:        "postgres",
		dollar:      true,
		migrateLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", int64(migrateLockID)),
		keyLock:     fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, hashtext(?))", lockClass),
	}
)

// Open opens (creating if needed) the SQLite store at path and migrates
// it to the current schema.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating store directory: %w", err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	// One connection: SQLite allows one writer, and this keeps writes
	// serialized without SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, d: sqliteDialect, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrating store %s: %w", path, err)
	}
	return s, nil
}

// OpenPostgres connects to the PostgreSQL store at url (a postgres:// URL or
// keyword=value string) and migrates it to the current schema. The tables
// live where unqualified names resolve: the URL's database, in the first
// schema of its search_path. Several previewd processes may share one
// store; migrations run once, under an advisory lock.
//
// Queries use pgx's exec mode (unnamed prepared statements), which works
// through a pooler in transaction mode, unless the URL's
// default_query_exec_mode asks for another.
func OpenPostgres(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing store URL: %w", err) // pgx hides the password
	}
	if cfg.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement && !strings.Contains(url, "default_query_exec_mode") {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, d: pgDialect, now: time.Now}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to the store: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrating store: %w", err)
	}
	return s, nil
}

// q returns query with its ? placeholders in the dialect's form. The
// store's queries hold no ? inside literals.
func (s *Store) q(query string) string {
	if !s.d.dollar || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
