package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SetDown marks key as put down by actor: the reconciler removes it and
// does not deploy it again until ClearDown. Marking again keeps the first;
// an expiry mark becomes a down mark (a push no longer brings it back).
func (s *Store) SetDown(ctx context.Context, key, actor string) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO down_environments (key, by_actor, created_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET reason = 'down', sha = '', by_actor = excluded.by_actor, created_at = excluded.created_at
WHERE down_environments.reason = 'expired'`),
		key, actor, ms(s.now()))
	if err != nil {
		return fmt.Errorf("putting %s down: %w", key, err)
	}
	return nil
}

// ClearDown removes key's down mark and reports whether it was down.
func (s *Store) ClearDown(ctx context.Context, key string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM down_environments WHERE key = ?`), key)
	if err != nil {
		return false, fmt.Errorf("bringing %s up: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("bringing %s up: %w", key, err)
	}
	return n > 0, nil
}

// IsDown reports whether key is marked down.
func (s *Store) IsDown(ctx context.Context, key string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT 1 FROM down_environments WHERE key = ?`), key).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the down mark of %s: %w", key, err)
	}
	return true, nil
}

// DownMark is an environment put down on request.
type DownMark struct {
	Key  string    `json:"key"`
	By   string    `json:"by"`
	Time time.Time `json:"time"`
	// Reason is DownRequested or DownExpired; SHA is the commit an
	// expired environment was at.
	Reason string `json:"reason"`
	SHA    string `json:"sha,omitempty"`
}

// Downs returns the environments marked down, by key.
func (s *Store) Downs(ctx context.Context) ([]DownMark, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key, by_actor, created_at, reason, sha FROM down_environments ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("listing down environments: %w", err)
	}
	defer rows.Close()
	var out []DownMark
	for rows.Next() {
		var m DownMark
		var at int64
		if err := rows.Scan(&m.Key, &m.By, &at, &m.Reason, &m.SHA); err != nil {
			return nil, fmt.Errorf("listing down environments: %w", err)
		}
		m.Time = fromMS(at)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing down environments: %w", err)
	}
	return out, nil
}
