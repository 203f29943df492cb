package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// AuditEntry is one action by a person or a token.
type AuditEntry struct {
	// ID orders the entries; Audit's before takes one.
	ID   int64     `json:"id"`
	Time time.Time `json:"time"`
	// Actor is the principal's name: token:ci, anonymous, github:octocat.
	Actor string `json:"actor"`
	// Action is what was done: redeploy, sync, sign-in, sign-out, ...
	Action string `json:"action"`
	// Via is where it came from: api, dashboard or pr-comment.
	Via string `json:"via"`
	// Key is the environment acted on, empty for none.
	Key string `json:"key,omitempty"`
	// Detail is a human note (a command's argument, a refusal's reason).
	Detail string `json:"detail,omitempty"`
	// Remote is the client's address, when known.
	Remote string `json:"remote,omitempty"`
}

// ReasonAction is the reason of the history event an audited action on
// an environment leaves.
const ReasonAction = "Action"

// AddAudit records e (its ID and, if zero, Time are set here). An action
// on an environment (Key set) is also an event in its history, naming the
// actor, in the same transaction.
func (s *Store) AddAudit(ctx context.Context, e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recording audit entry: %w", err)
	}
	defer tx.Rollback() // a no-op once committed
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO audit (time, actor, action, via, key, detail, remote) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		ms(e.Time), e.Actor, e.Action, e.Via, e.Key, e.Detail, e.Remote)
	if err != nil {
		return fmt.Errorf("recording audit entry: %w", err)
	}
	if e.Key != "" {
		msg := e.Action + " by " + e.Actor + " (" + e.Via + ")"
		if e.Detail != "" {
			msg += ": " + e.Detail
		}
		if err := s.addEvent(ctx, tx, e.Key, env.Event{Time: e.Time, Reason: ReasonAction, Message: msg}); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recording audit entry: %w", err)
	}
	return nil
}

// Audit returns up to limit entries, newest first, older than the entry
// with ID before (0: from the newest).
func (s *Store) Audit(ctx context.Context, limit int, before int64) ([]AuditEntry, error) {
	q := `SELECT id, time, actor, action, via, key, detail, remote FROM audit`
	args := []any{}
	if before > 0 {
		q += ` WHERE id < ?`
		args = append(args, before)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("reading the audit trail: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var t int64
		if err := rows.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.Via, &e.Key, &e.Detail, &e.Remote); err != nil {
			return nil, fmt.Errorf("reading audit entry: %w", err)
		}
		e.Time = fromMS(t)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Secret returns the secret named name, making a random one (32 bytes,
// hex) on first use. Replicas sharing the store get the same one: the
// first to insert wins and everyone reads it back.
func (s *Store) Secret(ctx context.Context, name string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM secrets WHERE name = ?`), name).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("reading secret %s: %w", name, err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`),
		name, hex.EncodeToString(buf), ms(s.now())); err != nil {
		return "", fmt.Errorf("making secret %s: %w", name, err)
	}
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM secrets WHERE name = ?`), name).Scan(&v); err != nil {
		return "", fmt.Errorf("reading secret %s: %w", name, err)
	}
	return v, nil
}

// RevokeSession records that the session id ended before its expiry
// (until); expired revocations are pruned on the way.
func (s *Store) RevokeSession(ctx context.Context, id string, until time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM revoked_sessions WHERE expires_at < ?`), ms(s.now())); err != nil {
		return fmt.Errorf("pruning revoked sessions: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO revoked_sessions (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`), id, ms(until)); err != nil {
		return fmt.Errorf("revoking a session: %w", err)
	}
	return nil
}

// SessionRevoked reports whether the session id was revoked.
func (s *Store) SessionRevoked(ctx context.Context, id string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT count(*) FROM revoked_sessions WHERE id = ?`), id).Scan(&n); err != nil {
		return false, fmt.Errorf("reading revoked sessions: %w", err)
	}
	return n > 0, nil
}
