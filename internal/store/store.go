package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/previewd/previewd/internal/env"
)

// ErrNotFound is returned when no environment has the key.
var ErrNotFound = errors.New("environment not found")

// Store is the embedded state database.
type Store struct {
	db  *sql.DB
	now func() time.Time
}

const schema = `
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

// Open opens (creating if needed) the store at path.
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
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating store schema in %s: %w", path, err)
	}
	// Columns added after the first release, for stores made before.
	for _, col := range []string{`source TEXT NOT NULL DEFAULT ''`} {
		if _, err := db.ExecContext(ctx, `ALTER TABLE environments ADD COLUMN `+col); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			db.Close()
			return nil, fmt.Errorf("upgrading store schema in %s: %w", path, err)
		}
	}
	return &Store{db: db, now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

const envColumns = `key, kind, number, branch, sha, status, message, url, database, created_at, updated_at, ready_at, deleted_at`

type scanner interface{ Scan(...any) error }

func scanEnv(r scanner) (env.Environment, error) {
	var (
		e                  env.Environment
		kind, status       string
		created, updated   int64
		readyAt, deletedAt sql.NullInt64
	)
	if err := r.Scan(&e.Key, &kind, &e.Number, &e.Branch, &e.SHA, &status, &e.Message, &e.URL, &e.Database, &created, &updated, &readyAt, &deletedAt); err != nil {
		return e, err
	}
	e.Kind, e.Status = env.Kind(kind), env.Status(status)
	e.CreatedAt, e.UpdatedAt = fromMS(created), fromMS(updated)
	if readyAt.Valid {
		t := fromMS(readyAt.Int64)
		e.ReadyAt = &t
	}
	if deletedAt.Valid {
		t := fromMS(deletedAt.Int64)
		e.DeletedAt = &t
	}
	return e, nil
}

// Live returns the environments that have not been removed, ordered with
// production first and then by key.
func (s *Store) Live(ctx context.Context) ([]env.Environment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+envColumns+` FROM environments WHERE deleted_at IS NULL ORDER BY kind <> 'production', key`)
	if err != nil {
		return nil, fmt.Errorf("listing environments: %w", err)
	}
	defer rows.Close()
	var out []env.Environment
	for rows.Next() {
		e, err := scanEnv(rows)
		if err != nil {
			return nil, fmt.Errorf("reading environment: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Get returns one environment, live or removed, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (env.Environment, error) {
	e, err := scanEnv(s.db.QueryRowContext(ctx, `SELECT `+envColumns+` FROM environments WHERE key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, fmt.Errorf("reading environment %s: %w", key, err)
	}
	return e, nil
}

// Record holds what the reconciler keeps between runs that the API does not
// show.
type Record struct {
	env.Environment
	// FailedSHA is the SHA whose build or migration failed; it is not tried
	// again until the SHA changes or someone asks for a redeploy.
	FailedSHA string
	// Restarts counts crashes since the last healthy start.
	Restarts int
	// Deployed is the source last rolled out successfully, so that the
	// environment can be restarted before the forge answers (e.g. after a
	// reboot while the repository is unreachable).
	Deployed *env.Source
}

// GetRecord returns the environment with its private fields.
func (s *Store) GetRecord(ctx context.Context, key string) (Record, error) {
	var r Record
	e, err := s.Get(ctx, key)
	if err != nil {
		return r, err
	}
	r.Environment = e
	var src string
	err = s.db.QueryRowContext(ctx, `SELECT failed_sha, restarts, source FROM environments WHERE key = ?`, key).Scan(&r.FailedSHA, &r.Restarts, &src)
	if err != nil {
		return r, fmt.Errorf("reading environment %s: %w", key, err)
	}
	if src != "" {
		var d env.Source
		if json.Unmarshal([]byte(src), &d) == nil && d.Key == key {
			r.Deployed = &d
		}
	}
	return r, nil
}

// Upsert creates the environment or brings a removed one back to life, and
// sets its identity fields from src. It keeps status and history.
func (s *Store) Upsert(ctx context.Context, src env.Source) error {
	now := ms(s.now())
	_, err := s.db.ExecContext(ctx, `
INSERT INTO environments (key, kind, number, branch, status, created_at, updated_at)
VALUES (?, ?, ?, ?, 'pending', ?, ?)
ON CONFLICT (key) DO UPDATE SET
	kind = excluded.kind, number = excluded.number, branch = excluded.branch,
	created_at = CASE WHEN deleted_at IS NULL THEN created_at ELSE excluded.created_at END,
	status     = CASE WHEN deleted_at IS NULL THEN status ELSE 'pending' END,
	sha        = CASE WHEN deleted_at IS NULL THEN sha ELSE '' END,
	failed_sha = CASE WHEN deleted_at IS NULL THEN failed_sha ELSE '' END,
	updated_at = CASE WHEN deleted_at IS NULL THEN updated_at ELSE excluded.updated_at END,
	deleted_at = NULL`,
		src.Key, string(src.Kind), src.Number, src.Branch, now, now)
	if err != nil {
		return fmt.Errorf("saving environment %s: %w", src.Key, err)
	}
	return nil
}

// Update is a change to an environment's state. Nil fields are left alone.
type Update struct {
	SHA       *string
	Status    *env.Status
	Message   *string
	URL       *string
	Database  *string
	FailedSHA *string
	Restarts  *int
	Deployed  *env.Source
	Ready     bool // set ready_at to now
	Deleted   bool // set deleted_at to now
}

// Set applies u to the environment.
func (s *Store) Set(ctx context.Context, key string, u Update) error {
	q := `UPDATE environments SET updated_at = ?`
	args := []any{ms(s.now())}
	add := func(col string, v any) {
		q += `, ` + col + ` = ?`
		args = append(args, v)
	}
	if u.SHA != nil {
		add("sha", *u.SHA)
	}
	if u.Status != nil {
		add("status", string(*u.Status))
	}
	if u.Message != nil {
		add("message", *u.Message)
	}
	if u.URL != nil {
		add("url", *u.URL)
	}
	if u.Database != nil {
		add("database", *u.Database)
	}
	if u.FailedSHA != nil {
		add("failed_sha", *u.FailedSHA)
	}
	if u.Restarts != nil {
		add("restarts", *u.Restarts)
	}
	if u.Deployed != nil {
		b, err := json.Marshal(u.Deployed)
		if err != nil {
			return err
		}
		add("source", string(b))
	}
	if u.Ready {
		add("ready_at", ms(s.now()))
	}
	if u.Deleted {
		add("deleted_at", ms(s.now()))
	}
	q += ` WHERE key = ?`
	args = append(args, key)
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("updating environment %s: %w", key, err)
	}
	return nil
}

// MaxEvents is how many events the history of one environment keeps; older
// ones are pruned as new ones come, so a flapping or long-lived environment
// (a teardown retried for days, a crash loop) cannot grow the store without
// bound.
const MaxEvents = 200

// AddEvent appends to the environment's history and prunes its oldest
// events beyond MaxEvents.
func (s *Store) AddEvent(ctx context.Context, key string, ev env.Event) error {
	if ev.Time.IsZero() {
		ev.Time = s.now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO events (key, time, reason, message, sha) VALUES (?, ?, ?, ?, ?)`,
		key, ms(ev.Time), ev.Reason, ev.Message, ev.SHA)
	if err != nil {
		return fmt.Errorf("recording event for %s: %w", key, err)
	}
	_, err = s.db.ExecContext(ctx, `
DELETE FROM events WHERE key = ? AND id <= (
	SELECT id FROM events WHERE key = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, key, key, MaxEvents)
	if err != nil {
		return fmt.Errorf("pruning events of %s: %w", key, err)
	}
	return nil
}

// Events returns up to limit events of the environment, newest first.
func (s *Store) Events(ctx context.Context, key string, limit int) ([]env.Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT time, reason, message, sha FROM events WHERE key = ? ORDER BY id DESC LIMIT ?`, key, limit)
	if err != nil {
		return nil, fmt.Errorf("reading events of %s: %w", key, err)
	}
	defer rows.Close()
	var out []env.Event
	for rows.Next() {
		var ev env.Event
		var t int64
		if err := rows.Scan(&t, &ev.Reason, &ev.Message, &ev.SHA); err != nil {
			return nil, fmt.Errorf("reading event: %w", err)
		}
		ev.Time = fromMS(t)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// Items returns the environment's inventory.
func (s *Store) Items(ctx context.Context, key string) ([]env.Item, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kind, name, data FROM inventory WHERE key = ? ORDER BY created_at, kind, name`, key)
	if err != nil {
		return nil, fmt.Errorf("reading inventory of %s: %w", key, err)
	}
	defer rows.Close()
	var out []env.Item
	for rows.Next() {
		var it env.Item
		var kind, data string
		if err := rows.Scan(&kind, &it.Name, &data); err != nil {
			return nil, fmt.Errorf("reading inventory item: %w", err)
		}
		it.Kind = env.ItemKind(kind)
		if data != "" {
			it.Data = []byte(data)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// AllItems returns the inventory of every environment, by key.
func (s *Store) AllItems(ctx context.Context) (map[string][]env.Item, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key, kind, name, data FROM inventory ORDER BY created_at, kind, name`)
	if err != nil {
		return nil, fmt.Errorf("reading inventory: %w", err)
	}
	defer rows.Close()
	out := map[string][]env.Item{}
	for rows.Next() {
		var key, kind, data string
		var it env.Item
		if err := rows.Scan(&key, &kind, &it.Name, &data); err != nil {
			return nil, fmt.Errorf("reading inventory item: %w", err)
		}
		it.Kind = env.ItemKind(kind)
		if data != "" {
			it.Data = []byte(data)
		}
		out[key] = append(out[key], it)
	}
	return out, rows.Err()
}

// PutItem records (or updates) an item the environment owns.
func (s *Store) PutItem(ctx context.Context, key string, it env.Item) error {
	_, err := s.db.ExecContext(ctx, `
INSERT INTO inventory (key, kind, name, data, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key, kind, name) DO UPDATE SET data = excluded.data`,
		key, string(it.Kind), it.Name, string(it.Data), ms(s.now()))
	if err != nil {
		return fmt.Errorf("recording %s %s of %s: %w", it.Kind, it.Name, key, err)
	}
	return nil
}

// DeleteItem forgets an item once it has been removed.
func (s *Store) DeleteItem(ctx context.Context, key string, it env.Item) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM inventory WHERE key = ? AND kind = ? AND name = ?`, key, string(it.Kind), it.Name)
	if err != nil {
		return fmt.Errorf("forgetting %s %s of %s: %w", it.Kind, it.Name, key, err)
	}
	return nil
}
