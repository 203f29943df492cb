package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// ErrNotFound is returned when no environment has the key.
var ErrNotFound = errors.New("environment not found")

// Store is previewd's state database, SQLite or PostgreSQL.
type Store struct {
	db  *sql.DB
	d   dialect
	now func() time.Time
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

const envColumns = `key, kind, number, branch, sha, status, message, url, database, created_at, updated_at, ready_at, deleted_at,
	activity_at, expires_at, kept, run_s, cpu_s, gb_s, peak_mem, usage_since, db_tier`

type scanner interface{ Scan(...any) error }

// scanEnv reads a row of envColumns, then extra.
func scanEnv(r scanner, extra ...any) (env.Environment, error) {
	var (
		e                                            env.Environment
		kind, status                                 string
		created, updated                             int64
		readyAt, deletedAt, activity, expires, since sql.NullInt64
		kept                                         int
		u                                            env.Usage
	)
	dest := append([]any{&e.Key, &kind, &e.Number, &e.Branch, &e.SHA, &status, &e.Message, &e.URL, &e.Database, &created, &updated, &readyAt, &deletedAt,
		&activity, &expires, &kept, &u.RunSeconds, &u.CPUSeconds, &u.GBSeconds, &u.PeakMemoryBytes, &since, &e.DBTier}, extra...)
	if err := r.Scan(dest...); err != nil {
		return e, err
	}
	e.Kind, e.Status = env.Kind(kind), env.Status(status)
	e.CreatedAt, e.UpdatedAt = fromMS(created), fromMS(updated)
	e.ReadyAt, e.DeletedAt = timeOf(readyAt), timeOf(deletedAt)
	e.LastActivityAt, e.ExpiresAt = timeOf(activity), timeOf(expires)
	e.Kept = kept != 0
	if t := timeOf(since); t != nil {
		u.Since = *t
	} else {
		u.Since = e.CreatedAt
	}
	e.Usage = &u
	return e, nil
}

func timeOf(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// msOrNull is t in milliseconds, or NULL for the zero time.
func msOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return ms(t)
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
	e, err := scanEnv(s.db.QueryRowContext(ctx, s.q(`SELECT `+envColumns+` FROM environments WHERE key = ?`), key))
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
	// QueuedAt is when it joined the queue for a running slot (first
	// come, first served); zero when not queued.
	QueuedAt time.Time
	// ExtendUntil is the least expiry /preview extend asked for.
	ExtendUntil time.Time
	// WarnedFor is the expiry the last TTL warning was about.
	WarnedFor time.Time
	// DBTierAsked is the tier the pull request asked for by command
	// (/preview db <tier>); a label wins over it. Empty: none asked.
	DBTierAsked string
}

// GetRecord returns the environment with its private fields, or
// ErrNotFound.
func (s *Store) GetRecord(ctx context.Context, key string) (Record, error) {
	r, err := scanRecord(s.db.QueryRowContext(ctx, s.q(`SELECT `+recordColumns+` FROM environments WHERE key = ?`), key))
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("reading environment %s: %w", key, err)
	}
	return r, nil
}

// LiveRecords returns the records of the live environments, in Live's
// order, in one query.
func (s *Store) LiveRecords(ctx context.Context) ([]Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordColumns+` FROM environments WHERE deleted_at IS NULL ORDER BY kind <> 'production', key`)
	if err != nil {
		return nil, fmt.Errorf("listing environments: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("reading environment: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const recordColumns = envColumns + `, failed_sha, restarts, source, queued_at, extend_until, warned_for, db_tier_asked`

// scanRecord reads a row of recordColumns.
func scanRecord(row scanner) (Record, error) {
	var (
		r                         Record
		src                       string
		err                       error
		queued, extend, warnedFor sql.NullInt64
	)
	r.Environment, err = scanEnv(row, &r.FailedSHA, &r.Restarts, &src, &queued, &extend, &warnedFor, &r.DBTierAsked)
	if err != nil {
		return r, err
	}
	for _, f := range []struct {
		v  sql.NullInt64
		to *time.Time
	}{{queued, &r.QueuedAt}, {extend, &r.ExtendUntil}, {warnedFor, &r.WarnedFor}} {
		if t := timeOf(f.v); t != nil {
			*f.to = *t
		}
	}
	if src != "" {
		var d env.Source
		if json.Unmarshal([]byte(src), &d) == nil && d.Key == r.Key {
			r.Deployed = &d
		}
	}
	return r, nil
}

// Upsert creates the environment or brings a removed one back to life, and
// sets its identity fields from src. It keeps status and history.
func (s *Store) Upsert(ctx context.Context, src env.Source) error {
	now := ms(s.now())
	// The old row's columns are qualified: PostgreSQL finds a bare name
	// ambiguous beside excluded's.
	_, err := s.db.ExecContext(ctx, s.q(`
INSERT INTO environments (key, kind, number, branch, status, created_at, updated_at, activity_at, usage_since)
VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
	kind = excluded.kind, number = excluded.number, branch = excluded.branch,
	created_at = CASE WHEN environments.deleted_at IS NULL THEN environments.created_at ELSE excluded.created_at END,
	status     = CASE WHEN environments.deleted_at IS NULL THEN environments.status ELSE 'pending' END,
	sha        = CASE WHEN environments.deleted_at IS NULL THEN environments.sha ELSE '' END,
	failed_sha = CASE WHEN environments.deleted_at IS NULL THEN environments.failed_sha ELSE '' END,
	source     = CASE WHEN environments.deleted_at IS NULL THEN environments.source ELSE '' END,
	restarts   = CASE WHEN environments.deleted_at IS NULL THEN environments.restarts ELSE 0 END,
	ready_at   = CASE WHEN environments.deleted_at IS NULL THEN environments.ready_at ELSE NULL END,
	updated_at = CASE WHEN environments.deleted_at IS NULL THEN environments.updated_at ELSE excluded.updated_at END,
	activity_at  = CASE WHEN environments.deleted_at IS NULL THEN environments.activity_at ELSE excluded.activity_at END,
	usage_since  = CASE WHEN environments.deleted_at IS NULL THEN environments.usage_since ELSE excluded.usage_since END,
	expires_at   = CASE WHEN environments.deleted_at IS NULL THEN environments.expires_at ELSE NULL END,
	queued_at    = CASE WHEN environments.deleted_at IS NULL THEN environments.queued_at ELSE NULL END,
	extend_until = CASE WHEN environments.deleted_at IS NULL THEN environments.extend_until ELSE NULL END,
	warned_for   = CASE WHEN environments.deleted_at IS NULL THEN environments.warned_for ELSE NULL END,
	db_tier      = CASE WHEN environments.deleted_at IS NULL THEN environments.db_tier ELSE '' END,
	kept         = CASE WHEN environments.deleted_at IS NULL THEN environments.kept ELSE 0 END,
	run_s        = CASE WHEN environments.deleted_at IS NULL THEN environments.run_s ELSE 0 END,
	cpu_s        = CASE WHEN environments.deleted_at IS NULL THEN environments.cpu_s ELSE 0 END,
	gb_s         = CASE WHEN environments.deleted_at IS NULL THEN environments.gb_s ELSE 0 END,
	peak_mem     = CASE WHEN environments.deleted_at IS NULL THEN environments.peak_mem ELSE 0 END,
	deleted_at = NULL`),
		src.Key, string(src.Kind), src.Number, src.Branch, now, now, now, now)
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
	// The lifecycle's fields. A pointer to the zero time clears the
	// column.
	Activity    *time.Time
	Expires     *time.Time
	QueuedAt    *time.Time
	ExtendUntil *time.Time
	WarnedFor   *time.Time
	Kept        *bool
	// DBTier is the tier the database was made with (Record.DBTier).
	DBTier *string
	// DBTierAsked is the tier asked for by command (Record.DBTierAsked).
	DBTierAsked *string
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
	for _, f := range []struct {
		col string
		t   *time.Time
	}{{"activity_at", u.Activity}, {"expires_at", u.Expires}, {"queued_at", u.QueuedAt}, {"extend_until", u.ExtendUntil}, {"warned_for", u.WarnedFor}} {
		if f.t != nil {
			add(f.col, msOrNull(*f.t))
		}
	}
	if u.Kept != nil {
		k := 0
		if *u.Kept {
			k = 1
		}
		add("kept", k)
	}
	if u.DBTier != nil {
		add("db_tier", *u.DBTier)
	}
	if u.DBTierAsked != nil {
		add("db_tier_asked", *u.DBTierAsked)
	}
	q += ` WHERE key = ?`
	args = append(args, key)
	if _, err := s.db.ExecContext(ctx, s.q(q), args...); err != nil {
		return fmt.Errorf("updating environment %s: %w", key, err)
	}
	return nil
}

// MaxEvents is how many events the history of one environment keeps; older
// ones are pruned as new ones come, so a flapping or long-lived environment
// (a teardown retried for days, a crash loop) cannot grow the store without
// bound.
const MaxEvents = 200

const (
	insertEvent = `INSERT INTO events (key, time, reason, message, sha) VALUES (?, ?, ?, ?, ?)`
	// pruneEvents deletes a key's events older than its newest n.
	pruneEvents = `
DELETE FROM events WHERE key = ? AND id <= (
	SELECT id FROM events WHERE key = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`
)

// AddEvent appends to the environment's history and prunes its oldest
// events beyond MaxEvents, in one transaction under the key's lock, so
// writers in several processes neither over-prune nor keep too many.
func (s *Store) AddEvent(ctx context.Context, key string, ev env.Event) error {
	if ev.Time.IsZero() {
		ev.Time = s.now()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recording event for %s: %w", key, err)
	}
	defer tx.Rollback() // a no-op once committed
	if err := s.addEvent(ctx, tx, key, ev); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recording event for %s: %w", key, err)
	}
	return nil
}

// addEvent appends ev and prunes, in tx, under the key's lock.
func (s *Store) addEvent(ctx context.Context, tx *sql.Tx, key string, ev env.Event) error {
	if s.d.keyLock != "" {
		if _, err := tx.ExecContext(ctx, s.q(s.d.keyLock), key); err != nil {
			return fmt.Errorf("locking events of %s: %w", key, err)
		}
	}
	_, err := tx.ExecContext(ctx, s.q(insertEvent), key, ms(ev.Time), ev.Reason, ev.Message, ev.SHA)
	if err != nil {
		return fmt.Errorf("recording event for %s: %w", key, err)
	}
	_, err = tx.ExecContext(ctx, s.q(pruneEvents), key, key, MaxEvents)
	if err != nil {
		return fmt.Errorf("pruning events of %s: %w", key, err)
	}
	return nil
}

// Events returns up to limit events of the environment, newest first.
func (s *Store) Events(ctx context.Context, key string, limit int) ([]env.Event, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT time, reason, message, sha FROM events WHERE key = ? ORDER BY id DESC LIMIT ?`), key, limit)
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
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT kind, name, data FROM inventory WHERE key = ? ORDER BY created_at, kind, name`), key)
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
	_, err := s.db.ExecContext(ctx, s.q(`
INSERT INTO inventory (key, kind, name, data, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key, kind, name) DO UPDATE SET data = excluded.data`),
		key, string(it.Kind), it.Name, string(it.Data), ms(s.now()))
	if err != nil {
		return fmt.Errorf("recording %s %s of %s: %w", it.Kind, it.Name, key, err)
	}
	return nil
}

// DeleteItem forgets an item once it has been removed.
func (s *Store) DeleteItem(ctx context.Context, key string, it env.Item) error {
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM inventory WHERE key = ? AND kind = ? AND name = ?`), key, string(it.Kind), it.Name)
	if err != nil {
		return fmt.Errorf("forgetting %s %s of %s: %w", it.Kind, it.Name, key, err)
	}
	return nil
}
