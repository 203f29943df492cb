package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestConcurrentWriters: two Store values on one database, as two previewd
// replicas have, writing at once lose no update. Every environment and
// inventory item written is there; Set on one row from both changes only
// the fields each gives; and one environment's history, written from both
// past MaxEvents, is pruned to exactly MaxEvents (the prune of each event
// runs under the key's lock).
func TestConcurrentWriters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		stores := []*Store{b.open(t), b.open(t)}
		if err := stores[0].Upsert(ctx, env.Source{Key: "feat", Kind: env.KindBranch, Branch: "feat"}); err != nil {
			t.Fatal(err)
		}
		const writers, each = 3, 90 // per store; 540 events in all
		var wg sync.WaitGroup
		errs := make(chan error, 2*writers)
		for si, s := range stores {
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- write(ctx, s, si, w, each)
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}

		s := stores[1]
		if got, want := len(liveKeys(t, s)), 1+2*writers; got != want {
			t.Errorf("%d live environments, want %d", got, want)
		}
		items, err := s.Items(ctx, "feat")
		if err != nil {
			t.Fatal(err)
		}
		if want := 2 * writers * each; len(items) != want {
			t.Errorf("feat has %d items, want %d", len(items), want)
		}
		if n := s.count(t, `SELECT count(*) FROM events WHERE key = ?`, "feat"); n != MaxEvents {
			t.Errorf("feat keeps %d events, want exactly %d", n, MaxEvents)
		}
		e, err := s.Get(ctx, "feat")
		if err != nil {
			t.Fatal(err)
		}
		// Writer 0 of store 0 sets only the URL, writer 0 of store 1 only
		// the message: each one's last value is kept.
		if want := fmt.Sprint("url-", each-1); e.URL != want {
			t.Errorf("feat's URL = %q, want %q", e.URL, want)
		}
		if want := fmt.Sprint("msg-", each-1); e.Message != want {
			t.Errorf("feat's message = %q, want %q", e.Message, want)
		}
	})
}

// write is one writer's share: its own environment, and events, items and
// (writer 0 only) one field of the shared environment "feat".
func write(ctx context.Context, s *Store, si, w, n int) error {
	own := fmt.Sprintf("s%d-w%d", si, w)
	if err := s.Upsert(ctx, env.Source{Key: own, Kind: env.KindBranch, Branch: own}); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := s.AddEvent(ctx, "feat", env.Event{Reason: "Test", Message: fmt.Sprint(own, "-", i)}); err != nil {
			return err
		}
		if err := s.PutItem(ctx, "feat", env.Item{Kind: env.ItemProcess, Name: fmt.Sprint(own, "-", i)}); err != nil {
			return err
		}
		if w != 0 {
			continue
		}
		u := Update{URL: ptr(fmt.Sprint("url-", i))}
		if si == 1 {
			u = Update{Message: ptr(fmt.Sprint("msg-", i))}
		}
		if err := s.Set(ctx, "feat", u); err != nil {
			return err
		}
	}
	return nil
}

// TestEventsPrunedUnderLock: while another replica is inside AddEvent for a
// key (its event inserted, the old ones pruned, not yet committed), an
// AddEvent for the same key waits for it, and the history ends at exactly
// MaxEvents. Without the key's lock the second prune would skip the row the
// first had already deleted, and keep MaxEvents+1.
func TestEventsPrunedUnderLock(t *testing.T) {
	// PostgreSQL only, reached directly: SQLite serialises writers itself,
	// and through PgBouncer's one-connection pool the waiter would wait in
	// the pooler, out of sight.
	b := postgresBackend(t, false)
	ctx := testCtx(t)
	other, s := b.open(t), b.open(t)
	for i := 0; i < MaxEvents; i++ {
		if err := s.AddEvent(ctx, "feat", env.Event{Reason: "Test", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// The other replica, half-way through AddEvent.
	tx, err := other.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, st := range []struct {
		q    string
		args []any
	}{
		{other.d.keyLock, []any{"feat"}},
		{insertEvent, []any{"feat", 0, "Test", "other", ""}},
		{pruneEvents, []any{"feat", "feat", MaxEvents}},
	} {
		if _, err := tx.ExecContext(ctx, other.q(st.q), st.args...); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.AddEvent(ctx, "feat", env.Event{Reason: "Test", Message: "mine"}) }()
	// Wait until that AddEvent waits for a lock (the key's, or without
	// it the row the other prune deleted).
	for {
		var waiting int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("AddEvent returned (%v) while another AddEvent of its key was uncommitted", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := s.count(t, `SELECT count(*) FROM events WHERE key = ?`, "feat"); n != MaxEvents {
		t.Errorf("feat keeps %d events, want exactly %d", n, MaxEvents)
	}
	evs, err := s.Events(ctx, "feat", 2)
	if err != nil || len(evs) != 2 || evs[0].Message != "mine" || evs[1].Message != "other" {
		t.Errorf("newest events = %+v, %v; want mine, then other", evs, err)
	}
}
