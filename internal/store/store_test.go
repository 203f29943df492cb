package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

// TestEventsPruned: an environment's history keeps its newest MaxEvents
// events, so a teardown retried for days or a crash loop cannot grow the
// store without bound, and other environments' histories are untouched.
func TestEventsPruned(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "previewd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddEvent(ctx, "other", env.Event{Reason: "Ready", Message: "other"}); err != nil {
		t.Fatal(err)
	}
	n := MaxEvents + 50
	for i := 0; i < n; i++ {
		if err := s.AddEvent(ctx, "feat", env.Event{Reason: "RemovalRetrying", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE key = 'feat'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != MaxEvents {
		t.Errorf("feat keeps %d events, want %d", rows, MaxEvents)
	}
	evs, err := s.Events(ctx, "feat", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Message != fmt.Sprint(n-1) {
		t.Errorf("newest event = %+v, want message %d", evs, n-1)
	}
	if other, err := s.Events(ctx, "other", 10); err != nil || len(other) != 1 {
		t.Errorf("other's history = %+v, %v; want its one event", other, err)
	}
}
