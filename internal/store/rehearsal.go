package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/previewd/previewd/internal/env"
)

// SetRehearsal stores key's latest migration rehearsal report, replacing
// the one before.
func (s *Store) SetRehearsal(ctx context.Context, key string, r env.Rehearsal) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("storing the rehearsal of %s: %w", key, err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO rehearsals (key, sha, report, at) VALUES (?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET sha = excluded.sha, report = excluded.report, at = excluded.at`), key, r.SHA, string(b), ms(s.now()))
	if err != nil {
		return fmt.Errorf("storing the rehearsal of %s: %w", key, err)
	}
	return nil
}

// Rehearsal returns key's latest migration rehearsal report, or
// ErrNotFound.
func (s *Store) Rehearsal(ctx context.Context, key string) (env.Rehearsal, error) {
	var r env.Rehearsal
	var b string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT report FROM rehearsals WHERE key = ?`), key).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("reading the rehearsal of %s: %w", key, err)
	}
	if err := json.Unmarshal([]byte(b), &r); err != nil {
		return r, fmt.Errorf("reading the rehearsal of %s: %w", key, err)
	}
	return r, nil
}
