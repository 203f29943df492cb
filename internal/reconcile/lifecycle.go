package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// The lifecycle's entry points (config lifecycle): activity, sleep, wake,
// extend and keep. Each only records a request or a mark and enqueues the
// key; Decide does the rest.

// ErrProduction refuses a lifecycle action on production, which never
// sleeps, expires or queues.
var ErrProduction = errors.New("production never sleeps or expires")

// Touch records activity on key now (a request through previewd's
// proxy). It is cheap enough to call on every request: the time is kept
// in memory and written to the store by the next reconcile of key, which
// the periodic flush asks for.
func (r *Reconciler) Touch(key string) {
	// Only keys the forge wants: a request for any host name must not
	// grow the map.
	r.mu.Lock()
	_, known := r.desired[key]
	r.mu.Unlock()
	if !known {
		return
	}
	now := r.o.Now()
	r.touchMu.Lock()
	r.touched[key] = now
	r.dirty[key] = true
	r.touchMu.Unlock()
}

// Wake asks for a sleeping (or queued) key to run again, and counts as
// activity. A request through the proxy, the API, the CLI and /preview
// wake call it.
func (r *Reconciler) Wake(key string) {
	if env.CheckKey(key) != nil {
		return
	}
	r.Touch(key)
	r.ask(key, func(q *request, seq uint64) { q.wake = seq })
}

// Sleep asks for key to be put to sleep now, on actor's request. It counts
// as activity (the TTL starts again), as every command does.
func (r *Reconciler) Sleep(ctx context.Context, key, actor string) error {
	if _, err := r.lifecycleTarget(ctx, key); err != nil {
		return err
	}
	r.Touch(key)
	r.askSleep(key, "put to sleep by "+actor+"; the next request wakes it", false)
	return nil
}

// askSleep asks for key to sleep, saying why; evicted when it is to make
// room for another.
func (r *Reconciler) askSleep(key, why string, evicted bool) {
	r.ask(key, func(q *request, _ uint64) { q.sleep, q.evicted = why, evicted })
}

// MaxExtend is the longest /preview extend.
const MaxExtend = 30 * 24 * time.Hour

// Extend keeps key from expiring for at least d from now, and returns
// when it now expires (zero when it never does: no ttl, or kept).
func (r *Reconciler) Extend(ctx context.Context, key string, d time.Duration) (time.Time, error) {
	if d <= 0 || d > MaxExtend {
		return time.Time{}, fmt.Errorf("extend by more than 0 and at most %s", env.HumanDuration(MaxExtend))
	}
	rec, err := r.lifecycleTarget(ctx, key)
	if err != nil {
		return time.Time{}, err
	}
	r.Touch(key)
	until := r.o.Now().Add(d).Truncate(time.Millisecond)
	if rec.ExtendUntil.After(until) {
		until = rec.ExtendUntil
	}
	if err := r.o.Store.Set(ctx, key, store.Update{ExtendUntil: &until}); err != nil {
		return time.Time{}, err
	}
	rec.ExtendUntil = until
	r.mu.Lock()
	src, ok := r.desired[key]
	r.mu.Unlock()
	o := Observed{Key: key, Record: &rec, Life: r.o.Lifecycle, Activity: r.o.Now()}
	if ok {
		o.Desired = &src
	}
	r.queue.Add(key)
	return Expiry(o), nil
}

// Keep pins key (on) so that it never sleeps or expires, or unpins it.
func (r *Reconciler) Keep(ctx context.Context, key string, on bool) error {
	if _, err := r.lifecycleTarget(ctx, key); err != nil {
		return err
	}
	r.Touch(key)
	if err := r.o.Store.Set(ctx, key, store.Update{Kept: &on}); err != nil {
		return err
	}
	r.queue.Add(key)
	return nil
}

// lifecycleTarget returns key's live record, refusing production and
// what does not exist (store.ErrNotFound).
func (r *Reconciler) lifecycleTarget(ctx context.Context, key string) (store.Record, error) {
	if err := env.CheckKey(key); err != nil {
		return store.Record{}, err
	}
	if key == env.ProductionKey {
		return store.Record{}, ErrProduction
	}
	rec, err := r.o.Store.GetRecord(ctx, key)
	switch {
	case err != nil:
		return rec, err
	case rec.DeletedAt != nil:
		return rec, store.ErrNotFound
	case rec.Kind == env.KindProduction:
		return rec, ErrProduction
	}
	return rec, nil
}

// activity returns key's last activity: what the store holds, what Touch
// saw since, and now for a push (a commit not deployed yet).
func (r *Reconciler) activity(key string, o Observed) time.Time {
	var t time.Time
	if o.Record != nil && o.Record.DeletedAt == nil && o.Record.LastActivityAt != nil {
		t = *o.Record.LastActivityAt
	}
	r.touchMu.Lock()
	if m := r.touched[key]; m.After(t) {
		t = m
	}
	r.touchMu.Unlock()
	if o.Desired != nil && (o.Record == nil || o.Record.DeletedAt != nil || o.Record.SHA != o.Desired.SHA) {
		t = o.Now
	}
	return t.Truncate(time.Millisecond)
}

// saveActivity writes o's activity and the expiry it gives when they
// changed, so they survive a restart and the API shows them.
func (r *Reconciler) saveActivity(ctx context.Context, o Observed) error {
	if !o.live() || o.Activity.IsZero() {
		return nil
	}
	exp := Expiry(o)
	rec := o.Record
	same := func(p *time.Time, t time.Time) bool {
		if p == nil {
			return t.IsZero()
		}
		return p.Equal(t)
	}
	if same(rec.LastActivityAt, o.Activity) && same(rec.ExpiresAt, exp) {
		return nil
	}
	return r.o.Store.SetActivity(ctx, o.Key, o.Activity, exp)
}

// admit asks the cap for o's key (see Admit) and records the answer in o:
// a claim on the slot when admitted, the eviction it asks for.
func (r *Reconciler) admit(ctx context.Context, o *Observed) error {
	l := r.o.Lifecycle
	if l.MaxRunning <= 0 || o.production() || o.Desired == nil {
		return nil
	}
	entries, err := r.slotEntries(ctx)
	if err != nil {
		return err
	}
	r.capMu.Lock()
	a := Admit(l.MaxRunning, l.Evict, entries, r.claims, r.evicting, o.Key, o.Now)
	if a.Admitted {
		r.claims[o.Key] = true
	}
	if a.Evict != "" {
		r.evicting[a.Evict] = true
	}
	r.capMu.Unlock()
	if a.Evict != "" {
		r.log.Info("evicting the least recently used preview", "env", a.Evict, "for", o.Key)
		r.askSleep(a.Evict, "put to sleep to make room for "+o.Key+" (maxRunning "+fmt.Sprint(l.MaxRunning)+"); the next request wakes it", true)
	}
	if !a.Admitted {
		o.Slot = &a
	}
	return nil
}

// slotEntries reads what the cap looks at, in one query.
func (r *Reconciler) slotEntries(ctx context.Context) ([]SlotEntry, error) {
	recs, err := r.o.Store.LiveRecords(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]SlotEntry, len(recs))
	for i, rec := range recs {
		e := SlotEntry{Key: rec.Key, Status: rec.Status, Production: rec.Kind == env.KindProduction || rec.Key == env.ProductionKey,
			QueuedAt: rec.QueuedAt, Kept: rec.Kept || r.desired[rec.Key].Keep}
		if rec.LastActivityAt != nil {
			e.Activity = *rec.LastActivityAt
		}
		out[i] = e
	}
	r.touchMu.Lock()
	for i := range out {
		if t := r.touched[out[i].Key]; t.After(out[i].Activity) {
			out[i].Activity = t
		}
	}
	r.touchMu.Unlock()
	return out, nil
}

// unclaim lets go of key's claim on a slot once its reconcile is over
// (the store now says whether it holds one), and of its eviction.
func (r *Reconciler) unclaim(key string) {
	r.capMu.Lock()
	delete(r.claims, key)
	delete(r.evicting, key)
	r.capMu.Unlock()
}

// queueRefresh is how many queued keys beyond the free slots a freed slot
// enqueues too, so their places ("2nd of 3") stay current.
const queueRefresh = 10

// freed enqueues the keys first in the queue after a plan that may have
// freed a slot (a sleep, a removal, a failure), so the next one starts.
func (r *Reconciler) freed(ctx context.Context, plan Plan) {
	if r.o.Lifecycle.MaxRunning <= 0 {
		return
	}
	switch plan.Action {
	case Nothing, Wait, Warn, Hold, Queue:
		return
	}
	entries, err := r.slotEntries(ctx)
	if err != nil {
		r.log.Warn("reading the queue", "err", err)
		return
	}
	r.capMu.Lock()
	holding := len(r.claims)
	r.capMu.Unlock()
	var waiting []SlotEntry
	for _, e := range entries {
		switch {
		case e.holds():
			holding++
		case e.Status == env.StatusQueued && !e.Production:
			waiting = append(waiting, e)
		}
	}
	slices.SortFunc(waiting, func(a, b SlotEntry) int {
		if c := a.QueuedAt.Compare(b.QueuedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	n := min(len(waiting), max(r.o.Lifecycle.MaxRunning-holding, 0)+queueRefresh)
	for _, e := range waiting[:n] {
		r.queue.Add(e.Key)
	}
}

// tick writes the activity Touch saw (by enqueueing the keys, whose
// reconcile saves it) every FlushInterval, and samples the meter every
// MeterInterval, until ctx is done.
func (r *Reconciler) tick(ctx context.Context) {
	flush := time.NewTicker(r.o.FlushInterval)
	defer flush.Stop()
	var meter <-chan time.Time
	if _, ok := r.o.Runtime.(runtime.Meter); ok && r.o.MeterInterval > 0 {
		t := time.NewTicker(r.o.MeterInterval)
		defer t.Stop()
		meter = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			r.touchMu.Lock()
			keys := make([]string, 0, len(r.dirty))
			for k := range r.dirty {
				keys = append(keys, k)
			}
			clear(r.dirty)
			r.touchMu.Unlock()
			for _, k := range keys {
				r.queue.Add(k)
			}
		case <-meter:
			r.meter(ctx)
		}
	}
}

// sampleAt is one meter sample and when it was taken.
type sampleAt struct {
	runtime.Sample
	at time.Time
}

// meter samples what every running environment uses and adds it to the
// store: running time and memory over time since the last sample, CPU
// time since the last sample of the same instance (or the pods'
// reservation over the interval). An environment seen for the first time
// is counted from the next sample on.
func (r *Reconciler) meter(ctx context.Context) {
	m := r.o.Runtime.(runtime.Meter)
	samples, err := m.Usage(ctx)
	if err != nil {
		r.log.Warn("sampling usage", "err", err)
		return
	}
	now := r.o.Now()
	used := make(map[string]store.Used, len(samples))
	for key, s := range samples {
		last, seen := r.samples[key]
		u := store.Used{MemoryBytes: s.MemoryBytes}
		if seen {
			// A sample long overdue (the machine slept) counts as two
			// intervals, not the whole gap.
			secs := min(now.Sub(last.at), 2*r.o.MeterInterval).Seconds()
			u.RunSeconds = secs
			u.GBSeconds = float64(s.MemoryBytes) / 1e9 * secs
			switch {
			case s.CPUCores > 0:
				u.CPUSeconds = s.CPUCores * secs
			case s.Instance == last.Instance && s.CPUSeconds >= last.CPUSeconds:
				u.CPUSeconds = s.CPUSeconds - last.CPUSeconds
			case s.Instance != last.Instance:
				u.CPUSeconds = s.CPUSeconds // started since the last sample
			}
		}
		used[key] = u
		r.samples[key] = sampleAt{Sample: s, at: now}
	}
	for key := range r.samples {
		if _, ok := samples[key]; !ok {
			delete(r.samples, key)
		}
	}
	if err := r.o.Store.AddUsage(ctx, used); err != nil {
		r.log.Warn("recording usage", "err", err)
	}
}

// forgetActivity drops what Touch kept of a removed key.
func (r *Reconciler) forgetActivity(key string) {
	r.touchMu.Lock()
	delete(r.touched, key)
	delete(r.dirty, key)
	r.touchMu.Unlock()
}
