package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

const (
	kindSQLite   = "sqlite"
	kindPostgres = "postgres"
)

// errNoDatabase is returned when the environment names no database.
var errNoDatabase = errors.New("no database configured: set DATABASE_URL (postgres://... or sqlite:/absolute/path) or DATABASE_PATH")

// dbTarget is the database chosen from the configuration, before connecting.
type dbTarget struct {
	kind string // kindSQLite or kindPostgres
	path string // SQLite: absolute file path
	url  string // PostgreSQL: connection URL
}

// chooseDatabase picks the database from the environment:
//
//   - DATABASE_URL starting with postgres:// or postgresql:// selects PostgreSQL;
//   - else DATABASE_PATH selects that SQLite file;
//   - else DATABASE_URL of the form sqlite:/absolute/path selects that SQLite file;
//   - anything else is an error.
func chooseDatabase(c config) (dbTarget, error) {
	u := c.DatabaseURL
	switch {
	case hasPrefixFold(u, "postgres://") || hasPrefixFold(u, "postgresql://"):
		return dbTarget{kind: kindPostgres, url: u}, nil
	case c.DatabasePath != "":
		p, err := filepath.Abs(c.DatabasePath)
		if err != nil {
			return dbTarget{}, fmt.Errorf("DATABASE_PATH: %w", err)
		}
		return dbTarget{kind: kindSQLite, path: p}, nil
	case hasPrefixFold(u, "sqlite:"):
		p := u[len("sqlite:"):]
		// Accept sqlite:///abs/path as well as sqlite:/abs/path.
		if strings.HasPrefix(p, "///") {
			p = p[2:]
		}
		if !filepath.IsAbs(p) {
			return dbTarget{}, fmt.Errorf("DATABASE_URL %q: want sqlite: followed by an absolute file path", u)
		}
		return dbTarget{kind: kindSQLite, path: filepath.Clean(p)}, nil
	case u != "":
		scheme, _, _ := strings.Cut(u, ":")
		return dbTarget{}, fmt.Errorf("DATABASE_URL: unsupported scheme %q: want postgres://, postgresql:// or sqlite", scheme)
	default:
		return dbTarget{}, errNoDatabase
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// db is an open database handle plus what the app shows about it.
type db struct {
	*sql.DB
	kind   string // kindSQLite or kindPostgres
	file   string // SQLite: base name of the database file
	schema string // PostgreSQL: current_schema(), set by checkSchema
}

// dialect is the goose dialect for this database.
func (d *db) dialect() goose.Dialect {
	if d.kind == kindPostgres {
		return goose.DialectPostgres
	}
	return goose.DialectSQLite3
}

// label describes where the data lives, for the page footer.
func (d *db) label() string {
	if d.kind == kindPostgres {
		if d.schema == "" {
			return "postgres"
		}
		return "postgres · schema " + d.schema
	}
	return "sqlite · " + d.file
}

// openDB prepares a connection pool for t. It does not connect: the first
// query does.
func openDB(t dbTarget) (*db, error) {
	switch t.kind {
	case kindSQLite:
		sqldb, err := sql.Open("sqlite", sqliteDSN(t.path))
		if err != nil {
			return nil, fmt.Errorf("open sqlite database %s: %w", t.path, err)
		}
		return &db{DB: sqldb, kind: kindSQLite, file: filepath.Base(t.path)}, nil
	case kindPostgres:
		cfg, err := postgresConfig(t.url)
		if err != nil {
			return nil, err
		}
		sqldb := stdlib.OpenDB(*cfg)
		sqldb.SetMaxOpenConns(10)
		sqldb.SetMaxIdleConns(5)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		return &db{DB: sqldb, kind: kindPostgres}, nil
	default:
		return nil, fmt.Errorf("unknown database kind %q", t.kind)
	}
}

// sqliteDSN builds a modernc.org/sqlite DSN for the file at path:
//   - busy_timeout so concurrent writers wait instead of failing with SQLITE_BUSY;
//   - WAL so readers do not block the writer;
//   - foreign keys on;
//   - times written in a format SQLite's date functions understand and that
//     sorts correctly as text (all times are stored in UTC);
//   - write transactions take the write lock up front (BEGIN IMMEDIATE), which
//     avoids SQLITE_BUSY on lock upgrades.
func sqliteDSN(path string) string {
	q := "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)" +
		"&_time_format=sqlite&_txlock=immediate"
	// A file: URI, so escape characters such as '?', '#' and '%' in the path.
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q
}

// postgresConfig parses a PostgreSQL URL for use behind PgBouncer in
// transaction pooling mode, which keeps no per-client session state and (in
// PgBouncer 1.18) supports no prepared statements:
//
//   - Queries use pgx's "exec" mode (extended protocol, unnamed statements, one
//     round trip) instead of its default of preparing and caching named
//     statements, unless the URL sets default_query_exec_mode itself.
//   - Nothing sets search_path: a SET would stick to a pooled server connection
//     and leak to other clients, and PgBouncer rejects search_path as a startup
//     parameter. Each environment's role has its schema as its default
//     search_path instead; checkSchema verifies that.
func postgresConfig(rawURL string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if !urlSetsParam(rawURL, "default_query_exec_mode") {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	return cfg, nil
}

func urlSetsParam(rawURL, name string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	return u.Query().Has(name)
}

// schemaMismatchError reports that the connection's current schema is not the
// one the environment expects.
type schemaMismatchError struct {
	want, got string
}

func (e *schemaMismatchError) Error() string {
	got := fmt.Sprintf("%q", e.got)
	if e.got == "" {
		got = "NULL (no schema on the search_path exists)"
	}
	return fmt.Sprintf("database schema mismatch: DATABASE_SCHEMA is %q but current_schema() is %s; "+
		"refusing to run so that nothing is read from or written to the wrong schema "+
		"(the database role's search_path should start with %q)", e.want, got, e.want)
}

// checkSchema records the PostgreSQL current_schema() and, if want is not
// empty, fails unless it equals want. This is the guard against migrations
// and data landing in another environment's schema. SQL in this app uses
// unqualified table names, so the role's search_path decides where they go.
// For SQLite it does nothing.
func (d *db) checkSchema(ctx context.Context, want string) error {
	if d.kind != kindPostgres {
		return nil
	}
	var got sql.NullString
	if err := d.QueryRowContext(ctx, "SELECT current_schema()").Scan(&got); err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	d.schema = got.String
	if want != "" && got.String != want {
		return &schemaMismatchError{want: want, got: got.String}
	}
	return nil
}
