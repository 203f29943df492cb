package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// start is the clock of every test hub: ids begin at its microseconds.
var start = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func newHub(o Options) *Hub {
	o.Now = func() time.Time { return start }
	return New(o)
}

func notice(key string, status env.Status, at time.Time) env.Notice {
	return env.Notice{Env: env.Environment{Key: key, Kind: env.KindBranch, Branch: key, SHA: "abc", Status: status, UpdatedAt: at}}
}

func TestResume(t *testing.T) {
	tests := map[string]struct {
		lastID, last uint64
		count        int
		missed       int
		reset        bool
	}{
		"fresh":                   {0, 100, 10, 0, false},
		"up to date":              {100, 100, 10, 0, false},
		"nothing published yet":   {99, 99, 0, 0, false},
		"missed three":            {97, 100, 10, 3, false},
		"missed every one held":   {90, 100, 10, 10, false},
		"one too old":             {89, 100, 10, 0, true},
		"far too old":             {1, 100, 10, 0, true},
		"from an earlier run":     {5, 1_000_000, 1024, 0, true},
		"from the future":         {101, 100, 10, 0, true},
		"nothing held, id before": {98, 99, 0, 0, true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			missed, reset := resume(tt.lastID, tt.last, tt.count)
			if missed != tt.missed || reset != tt.reset {
				t.Errorf("resume(%d, %d, %d) = %d, %v; want %d, %v", tt.lastID, tt.last, tt.count, missed, reset, tt.missed, tt.reset)
			}
		})
	}
}

// TestSubscribeResumes: the ring keeps the last Size changes, in order,
// across its wrap; a subscriber after any held id gets exactly the ones
// after it, one older gets a reset, and ids start at the clock.
func TestSubscribeResumes(t *testing.T) {
	ctx := context.Background()
	h := newHub(Options{Size: 4})
	first := uint64(start.UnixMicro())
	if s := h.Subscribe(0); s.Last != first-1 || s.Reset || len(s.Missed) != 0 {
		t.Fatalf("before any change: last %d reset %v missed %d", s.Last, s.Reset, len(s.Missed))
	}
	for i := range 7 {
		h.Notify(ctx, notice(fmt.Sprintf("k%d", i), env.StatusBuilding, start))
	}
	last := first + 6
	for lastID := first - 1; lastID <= last; lastID++ {
		s := h.Subscribe(lastID)
		s.Cancel()
		if s.Last != last {
			t.Fatalf("Last = %d, want %d", s.Last, last)
		}
		if lastID < last-4 {
			if !s.Reset || s.Missed != nil {
				t.Errorf("after %d (older than held): reset %v, %d missed", lastID-first, s.Reset, len(s.Missed))
			}
			continue
		}
		if s.Reset || len(s.Missed) != int(last-lastID) {
			t.Fatalf("after %d: reset %v, %d missed, want %d", lastID-first, s.Reset, len(s.Missed), last-lastID)
		}
		for i, c := range s.Missed {
			if want := lastID + 1 + uint64(i); c.ID != want || c.Key != fmt.Sprintf("k%d", want-first) {
				t.Errorf("after %d: missed[%d] = %d %s, want %d", lastID-first, i, c.ID, c.Key, want)
			}
		}
	}
}

// TestChange: a notice becomes a change with its fields; the step's
// start is when its status was first saved, kept by a later save of the
// same status and SHA; a removal says so.
func TestChange(t *testing.T) {
	ctx := context.Background()
	h := newHub(Options{})
	s := h.Subscribe(0)
	defer s.Cancel()
	t0 := start.Add(time.Second)
	n := notice("pr-7", env.StatusBuilding, t0)
	n.Env.Kind, n.Env.Number, n.Env.Message, n.Env.URL = env.KindPullRequest, 7, "building abc", "http://pr-7.localhost"
	n.Reason, n.Took = "Building", 1500*time.Millisecond
	h.Notify(ctx, n)
	n.Env.UpdatedAt, n.Env.Message = t0.Add(5*time.Second), "building abc (cache)"
	h.Notify(ctx, n)
	n.Env.Status, n.Env.UpdatedAt = env.StatusMigrating, t0.Add(9*time.Second)
	h.Notify(ctx, n)
	gone := t0.Add(20 * time.Second)
	n.Env.Status, n.Env.UpdatedAt, n.Env.DeletedAt = env.StatusDeleting, gone, &gone
	h.Notify(ctx, n)
	var got []env.Change
	for range 4 {
		got = append(got, <-s.C)
	}
	c := got[0]
	if c.Key != "pr-7" || c.Kind != env.KindPullRequest || c.Number != 7 || c.Branch != "pr-7" || c.SHA != "abc" || c.Status != env.StatusBuilding ||
		c.Message != "building abc" || c.Reason != "Building" || c.URL != "http://pr-7.localhost" || !c.Time.Equal(t0) || c.TookMS != 1500 || c.Removed {
		t.Errorf("first change: %+v", c)
	}
	for i, want := range []time.Time{t0, t0, t0.Add(9 * time.Second), gone} {
		if !got[i].StepStartedAt.Equal(want) {
			t.Errorf("change %d (%s): step started %v, want %v", i, got[i].Status, got[i].StepStartedAt, want)
		}
		if i > 0 && got[i].ID != got[i-1].ID+1 {
			t.Errorf("ids not consecutive: %d after %d", got[i].ID, got[i-1].ID)
		}
	}
	if !got[3].Removed || len(h.steps) != 0 {
		t.Errorf("removal: removed %v, %d steps remembered", got[3].Removed, len(h.steps))
	}
}

// TestDropWhenFull: a subscriber that does not read is dropped once its
// buffer is full (channel closed, ErrSlow), Notify never blocks, and the
// others get every change.
func TestDropWhenFull(t *testing.T) {
	ctx := context.Background()
	h := newHub(Options{Buffer: 3})
	stalled := h.Subscribe(0)
	reader := h.Subscribe(0)
	// The reader acknowledges each change, and the next one is told only
	// then, so it never falls behind while the stalled one does.
	ack := make(chan uint64)
	go func() {
		defer close(ack)
		for c := range reader.C {
			ack <- c.ID
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			h.Notify(ctx, notice(fmt.Sprintf("k%d", i), env.StatusReady, start))
			if id, ok := <-ack; !ok || id != uint64(start.UnixMicro())+uint64(i) {
				t.Errorf("reader: change %d has id %d (open %v)", i, id, ok)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked on a subscriber that does not read")
	}
	n := 0
	for range stalled.C {
		n++
	}
	select {
	case <-stalled.Done():
	default:
		t.Error("stalled subscriber's Done not closed")
	}
	if n != 3 || !errors.Is(stalled.Err(), ErrSlow) {
		t.Errorf("stalled subscriber: %d changes then %v; want 3 then ErrSlow", n, stalled.Err())
	}
	if h.Subscribers() != 1 || reader.Err() != nil {
		t.Errorf("%d subscribers (reader: %v), want the reader only", h.Subscribers(), reader.Err())
	}
	reader.Cancel()
	if _, ok := <-ack; ok {
		t.Error("reader's channel still open after Cancel")
	}
}

// TestClose: Close drops every subscriber with ErrClosed; afterwards a
// subscription is closed at once and Notify does nothing.
func TestClose(t *testing.T) {
	ctx := context.Background()
	h := newHub(Options{})
	s := h.Subscribe(0)
	h.Close()
	if _, ok := <-s.C; ok || !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("after Close: open %v, err %v", ok, s.Err())
	}
	h.Notify(ctx, notice("a", env.StatusReady, start))
	s2 := h.Subscribe(0)
	if _, ok := <-s2.C; ok || !errors.Is(s2.Err(), ErrClosed) || s2.Last != s.Last {
		t.Errorf("subscribed after Close: open %v, err %v, last %d (before %d)", ok, s2.Err(), s2.Last, s.Last)
	}
	s.Cancel() // harmless after a drop
	h.Close()  // and twice
}

// TestConcurrent: notifiers, subscribers coming and going and resuming,
// under -race: every subscriber sees strictly increasing ids, and one
// that resumes with the last id it saw misses nothing held.
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	h := newHub(Options{Size: 4096, Buffer: 4096})
	const notifiers, each = 4, 500
	var wg, nwg sync.WaitGroup
	stop := make(chan struct{})
	for i := range notifiers {
		nwg.Add(1)
		go func() {
			defer nwg.Done()
			for j := range each {
				h.Notify(ctx, notice(fmt.Sprintf("k%d-%d", i, j%7), env.StatusBuilding, start.Add(time.Duration(j)*time.Millisecond)))
			}
		}()
	}
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lastID uint64
			for range 20 {
				s := h.Subscribe(lastID)
				if s.Reset {
					errs <- fmt.Errorf("reset after %d, though everything is held", lastID)
					s.Cancel()
					return
				}
				for _, c := range s.Missed {
					if lastID != 0 && c.ID != lastID+1 {
						errs <- fmt.Errorf("missed %d follows %d", c.ID, lastID)
					}
					lastID = c.ID
				}
			read:
				for range 10 {
					var c env.Change
					var ok bool
					select {
					case c, ok = <-s.C:
					case <-stop:
						break read
					}
					if !ok {
						break
					}
					if lastID != 0 && c.ID != lastID+1 {
						errs <- fmt.Errorf("%d follows %d", c.ID, lastID)
					}
					lastID = c.ID
				}
				s.Cancel()
			}
		}()
	}
	nwg.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := h.Subscribe(0); s.Last != uint64(start.UnixMicro())-1+notifiers*each {
		t.Errorf("last id %d after %d changes", s.Last, notifiers*each)
	}
}

// TestPublishAllocations: telling the hub a change allocates as much
// with 200 subscribers as with none: nothing per subscriber.
func TestPublishAllocations(t *testing.T) {
	ctx := context.Background()
	allocs := func(subscribers int) float64 {
		h := newHub(Options{Buffer: 1024})
		for range subscribers {
			s := h.Subscribe(0)
			go func() {
				for range s.C {
				}
			}()
		}
		defer h.Close()
		n := notice("pr-7", env.StatusBuilding, start)
		return testing.AllocsPerRun(200, func() { h.Notify(ctx, n) })
	}
	none, many := allocs(0), allocs(200)
	if many > none {
		t.Errorf("Notify allocates %v times with 200 subscribers, %v with none", many, none)
	}
}
