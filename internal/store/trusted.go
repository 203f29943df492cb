package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Contributor is a fork contributor trusted for this repository.
type Contributor struct {
	Login string    `json:"login"`
	By    string    `json:"by"`
	Time  time.Time `json:"time"`
}

// Trust records login as a trusted contributor, approved by actor.
// Trusting again keeps the first approval.
func (s *Store) Trust(ctx context.Context, login, actor string) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO trusted_contributors (login, by_actor, created_at) VALUES (?, ?, ?) ON CONFLICT (login) DO NOTHING`),
		strings.ToLower(login), actor, ms(s.now()))
	if err != nil {
		return fmt.Errorf("trusting %s: %w", login, err)
	}
	return nil
}

// Untrust removes login's trust and reports whether it was trusted.
func (s *Store) Untrust(ctx context.Context, login string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM trusted_contributors WHERE login = ?`), strings.ToLower(login))
	if err != nil {
		return false, fmt.Errorf("revoking %s: %w", login, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("revoking %s: %w", login, err)
	}
	return n > 0, nil
}

// Trusted returns the trusted contributors, by login.
func (s *Store) Trusted(ctx context.Context) ([]Contributor, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT login, by_actor, created_at FROM trusted_contributors ORDER BY login`)
	if err != nil {
		return nil, fmt.Errorf("listing trusted contributors: %w", err)
	}
	defer rows.Close()
	var out []Contributor
	for rows.Next() {
		var c Contributor
		var at int64
		if err := rows.Scan(&c.Login, &c.By, &at); err != nil {
			return nil, fmt.Errorf("listing trusted contributors: %w", err)
		}
		c.Time = time.UnixMilli(at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing trusted contributors: %w", err)
	}
	return out, nil
}
