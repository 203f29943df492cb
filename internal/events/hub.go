package events

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Defaults of Options.
const (
	DefaultSize      = 1024
	DefaultBuffer    = 64
	DefaultHeartbeat = 15 * time.Second
)

// Why a subscription's channel was closed (Subscription.Err).
var (
	// ErrSlow: the subscriber did not keep up and its buffer filled.
	ErrSlow = errors.New("subscriber too slow: its buffer of changes is full")
	// ErrClosed: the hub was closed (previewd is stopping).
	ErrClosed = errors.New("the hub of changes is closed")
)

// Options configure a Hub.
type Options struct {
	// Size is how many changes the hub keeps for resuming subscribers.
	// Default DefaultSize.
	Size int
	// Buffer is how many changes a subscriber may fall behind before it
	// is dropped. Default DefaultBuffer.
	Buffer int
	// Heartbeat is how often a quiet stream of changes says it is alive
	// (the streams read it; the hub itself sends none). Default
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// Now is the clock: the first id (see New) and the time of a change
	// saved without one. Default time.Now.
	Now func() time.Time
}

// Hub numbers environment changes, keeps the last Size of them and fans
// them out to subscribers. Its methods are safe for concurrent use.
type Hub struct {
	o Options

	mu sync.Mutex
	// ring holds the last changes; the newest has id last, and count
	// are held, ending at ring[(head-1) mod Size].
	ring   []env.Change
	head   int
	count  int
	last   uint64
	subs   map[*Subscription]struct{}
	steps  map[string]step
	closed bool
}

// step is the status an environment is in, at which SHA, since when.
type step struct {
	status env.Status
	sha    string
	since  time.Time
}

var _ interface {
	Notify(context.Context, env.Notice) error
} = (*Hub)(nil)

// New returns a hub. Its ids start from the clock in microseconds, so
// they keep increasing across restarts of previewd and an id of an
// earlier run is never mistaken for one of this run (it is older than
// any held: the subscriber is told to reset). They stay below 2^53, so
// JavaScript reads them exactly.
func New(o Options) *Hub {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	first := uint64(max(o.Now().UnixMicro(), 1))
	return &Hub{
		o: o, ring: make([]env.Change, o.Size), last: first - 1,
		subs: map[*Subscription]struct{}{}, steps: map[string]step{},
	}
}

// Heartbeat is how often a quiet stream should say it is alive.
func (h *Hub) Heartbeat() time.Duration { return h.o.Heartbeat }

// Notify turns a notice into a change and publishes it. It never blocks
// on a subscriber; after Close it does nothing.
func (h *Hub) Notify(_ context.Context, n env.Notice) error {
	c := changeOf(n)
	if c.Key == "" {
		return nil
	}
	if c.Time.IsZero() {
		c.Time = h.o.Now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	// The step began when its status (at this SHA) was first saved; a
	// later save in the same step keeps that time.
	s, ok := h.steps[c.Key]
	if !ok || s.status != c.Status || s.sha != c.SHA {
		s = step{status: c.Status, sha: c.SHA, since: c.Time}
	}
	c.StepStartedAt = s.since
	if c.Removed {
		delete(h.steps, c.Key)
	} else {
		h.steps[c.Key] = s
	}
	h.publish(c)
	return nil
}

// changeOf is the change a notice tells, without its id and step start.
func changeOf(n env.Notice) env.Change {
	e := n.Env
	c := env.Change{
		Key: e.Key, Kind: e.Kind, Number: e.Number, Branch: e.Branch, SHA: e.SHA,
		Status: e.Status, Message: e.Message, Reason: n.Reason, URL: e.URL,
		Time: e.UpdatedAt, TookMS: n.Took.Milliseconds(), Removed: e.DeletedAt != nil,
	}
	if c.Key == "" {
		c.Key = n.Source.Key
	}
	if c.Kind == "" {
		c.Kind = n.Source.Kind
	}
	if c.Number == 0 {
		c.Number = n.Source.Number
	}
	if c.Branch == "" {
		c.Branch = n.Source.Branch
	}
	if c.SHA == "" {
		c.SHA = n.Source.SHA
	}
	return c
}

// publish numbers c, keeps it and sends it to every subscriber, dropping
// those whose buffer is full. Call with h.mu held. It allocates nothing
// per subscriber.
func (h *Hub) publish(c env.Change) {
	h.last++
	c.ID = h.last
	h.ring[h.head] = c
	h.head = (h.head + 1) % len(h.ring)
	h.count = min(h.count+1, len(h.ring))
	for s := range h.subs {
		select {
		case s.c <- c:
		default:
			h.drop(s, ErrSlow)
		}
	}
}

// drop closes s's channel with err. Call with h.mu held.
func (h *Hub) drop(s *Subscription, err error) {
	delete(h.subs, s)
	s.err = err
	close(s.c)
	close(s.done)
}

// Subscription is one subscriber's view of the hub.
type Subscription struct {
	// Missed are the changes after the id subscribed with, oldest first
	// (none when it was 0 or Reset is set).
	Missed []env.Change
	// Reset is true when the hub no longer holds every change after that
	// id (too old, or from an earlier run): the subscriber must read the
	// environments again.
	Reset bool
	// Last is the id of the last change before the subscription; new
	// changes have greater ids.
	Last uint64
	// C receives the new changes. It is closed when the subscriber is
	// dropped (Err says why) or cancels.
	C <-chan env.Change

	hub  *Hub
	c    chan env.Change
	done chan struct{}
	err  error // under hub.mu
}

// Subscribe starts a subscription after lastID, the id of the last
// change the subscriber saw (0: none, start from now). Cancel it when
// done.
func (h *Hub) Subscribe(lastID uint64) *Subscription {
	c := make(chan env.Change, h.o.Buffer)
	s := &Subscription{C: c, c: c, done: make(chan struct{}), hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	s.Last = h.last
	missed, reset := resume(lastID, h.last, h.count)
	s.Reset = reset
	if missed > 0 {
		s.Missed = make([]env.Change, missed)
		start := (h.head - missed + len(h.ring)) % len(h.ring)
		for i := range missed {
			s.Missed[i] = h.ring[(start+i)%len(h.ring)]
		}
	}
	if h.closed {
		s.err = ErrClosed
		close(c)
		close(s.done)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

// resume decides what a subscriber that saw lastID gets when the hub
// holds the count changes ending with id last: the missed ones (the last
// missed held), or a reset when some after lastID are no longer held or
// lastID was never given (from an earlier run). 0 means none seen.
func resume(lastID, last uint64, count int) (missed int, reset bool) {
	switch {
	case lastID == 0 || lastID == last:
		return 0, false
	case lastID > last:
		return 0, true
	case last-lastID > uint64(count):
		return 0, true
	}
	return int(last - lastID), false
}

// Err says why C was closed: ErrSlow, ErrClosed, or nil (cancelled, or
// still open).
func (s *Subscription) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Cancel ends the subscription; C is closed unless it already was.
func (s *Subscription) Cancel() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.c)
		close(s.done)
	}
}

// Done is closed as soon as the subscription ends (dropped, cancelled,
// the hub closed), even while changes are still buffered in C: a writer
// blocked on a slow client can stop at once.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Subscribers returns how many subscriptions are open.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Close drops every subscriber with ErrClosed; later subscriptions are
// closed at once and notices are ignored. It is idempotent.
func (h *Hub) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.drop(s, ErrClosed)
	}
	return nil
}
