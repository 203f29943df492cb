package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SetActivity records key's last activity and the expiry it gives,
// without touching updated_at (which times restarts): activity is written
// often, and is not a change of state. A zero expires clears it.
func (s *Store) SetActivity(ctx context.Context, key string, activity, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE environments SET activity_at = ?, expires_at = ? WHERE key = ?`), msOrNull(activity), msOrNull(expires), key)
	if err != nil {
		return fmt.Errorf("recording activity of %s: %w", key, err)
	}
	return nil
}

// Used is what one environment used over one interval of the meter.
type Used struct {
	RunSeconds, CPUSeconds, GBSeconds float64
	// MemoryBytes is the memory it held at the end of the interval.
	MemoryBytes int64
}

// AddUsage adds what each live environment used, in one transaction:
// running time, CPU and memory over time accumulate, and the peak memory
// is the largest seen.
func (s *Store) AddUsage(ctx context.Context, used map[string]Used) error {
	if len(used) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recording usage: %w", err)
	}
	defer tx.Rollback() // a no-op once committed
	q := s.q(`UPDATE environments SET run_s = run_s + ?, cpu_s = cpu_s + ?, gb_s = gb_s + ?,
	peak_mem = CASE WHEN peak_mem < ? THEN ? ELSE peak_mem END
WHERE key = ? AND deleted_at IS NULL`)
	for key, u := range used {
		if _, err := tx.ExecContext(ctx, q, u.RunSeconds, u.CPUSeconds, u.GBSeconds, u.MemoryBytes, u.MemoryBytes, key); err != nil {
			return fmt.Errorf("recording usage of %s: %w", key, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recording usage: %w", err)
	}
	return nil
}

// Why an environment is down (DownMark.Reason).
const (
	DownRequested = "down"    // /preview down, the API
	DownExpired   = "expired" // lifecycle.ttl removed it at DownMark.SHA
)

// SetExpired marks key as removed by the TTL at sha: it stays down while
// the forge lists sha, and comes back at a new commit or with ClearDown
// (/preview up). A mark already there is kept.
func (s *Store) SetExpired(ctx context.Context, key, sha string) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO down_environments (key, by_actor, created_at, reason, sha) VALUES (?, 'previewd', ?, 'expired', ?) ON CONFLICT (key) DO NOTHING`),
		key, ms(s.now()), sha)
	if err != nil {
		return fmt.Errorf("marking %s expired: %w", key, err)
	}
	return nil
}

// DownMarkOf returns key's down mark, and whether it has one.
func (s *Store) DownMarkOf(ctx context.Context, key string) (DownMark, bool, error) {
	m := DownMark{Key: key}
	var at int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT by_actor, created_at, reason, sha FROM down_environments WHERE key = ?`), key).Scan(&m.By, &at, &m.Reason, &m.SHA)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return m, false, nil
	case err != nil:
		return m, false, fmt.Errorf("reading the down mark of %s: %w", key, err)
	}
	m.Time = fromMS(at)
	return m, true, nil
}
