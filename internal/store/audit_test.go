package store

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestAudit: entries come back newest first, paged with before; one on an
// environment is also an event in its history naming the actor.
func TestAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		c := newClock()
		s.now = c.now
		if err := s.Upsert(ctx, env.Source{Key: "pr-3", Kind: env.KindPullRequest, Number: 3}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Audit(ctx, 10, 0); err != nil || len(got) != 0 || got == nil {
			t.Fatalf("empty audit = %#v, %v; want an empty list", got, err)
		}
		entries := []AuditEntry{
			{Actor: "token:ci", Action: "sign-in", Via: "dashboard", Remote: "192.0.2.1"},
			{Actor: "token:ci", Action: "redeploy", Via: "api", Key: "pr-3"},
			{Actor: "anonymous", Action: "sync", Via: "api"},
		}
		for _, e := range entries {
			c.step(time.Second)
			if err := s.AddAudit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Audit(ctx, 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Action != "sync" || got[1].Action != "redeploy" || got[1].Key != "pr-3" || got[1].Actor != "token:ci" || got[1].Via != "api" {
			t.Fatalf("newest two = %+v", got)
		}
		if !got[0].Time.After(got[1].Time) {
			t.Errorf("times %v, %v not newest first", got[0].Time, got[1].Time)
		}
		older, err := s.Audit(ctx, 10, got[1].ID)
		if err != nil || len(older) != 1 || older[0].Action != "sign-in" || older[0].Remote != "192.0.2.1" {
			t.Errorf("before %d = %+v, %v", got[1].ID, older, err)
		}
		evs, err := s.Events(ctx, "pr-3", 10)
		if err != nil || len(evs) != 1 || evs[0].Reason != ReasonAction || !strings.Contains(evs[0].Message, "redeploy by token:ci (api)") {
			t.Errorf("history of pr-3 = %+v, %v", evs, err)
		}
	})
}

// TestSecret: a secret is made once and every Store on the same data,
// even racing, reads the same one.
func TestSecret(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		const n = 4
		got := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			s := b.open(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = s.Secret(ctx, "session-key")
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || len(got[i]) != 64 || got[i] != got[0] {
				t.Errorf("Secret %d = %q, %v; want the same 64 hex digits as %q", i, got[i], errs[i], got[0])
			}
		}
		other, err := b.open(t).Secret(ctx, "another")
		if err != nil || other == got[0] {
			t.Errorf("another secret = %q, %v", other, err)
		}
	})
}

// TestRevokedSessions: a revoked session is seen as such by every Store on
// the same data; revocations past their expiry are pruned.
func TestRevokedSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s, other := b.open(t), b.open(t)
		c := newClock()
		s.now = c.now
		if err := s.RevokeSession(ctx, "old", c.now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		c.step(time.Hour)
		if err := s.RevokeSession(ctx, "s1", c.now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeSession(ctx, "s1", c.now().Add(time.Hour)); err != nil {
			t.Errorf("revoking twice: %v", err)
		}
		for id, want := range map[string]bool{"s1": true, "s2": false, "old": false} {
			if got, err := other.SessionRevoked(ctx, id); err != nil || got != want {
				t.Errorf("SessionRevoked(%s) = %v, %v; want %v", id, got, err, want)
			}
		}
	})
}
