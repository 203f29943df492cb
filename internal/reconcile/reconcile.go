package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// Source lists the changes that should have environments now.
type Source interface {
	List(ctx context.Context) ([]env.Source, error)
}

// Refresher is implemented by sources that can re-read one key from the
// forge, so a reconcile never trusts a stale listing or an event's body.
type Refresher interface {
	Refresh(ctx context.Context, key string) (src env.Source, ok bool, err error)
}

// Notifier tells people about an environment (a PR comment, a deployment).
type Notifier interface {
	Notify(ctx context.Context, n env.Notice) error
}

// Options configure a Reconciler.
type Options struct {
	Store    *store.Store
	Source   Source
	Database database.Provider
	Runtime  runtime.Runtime
	// Notifiers are told about every status change.
	Notifiers []Notifier
	// URL returns an environment's URL before the runtime knows better.
	URL func(key string) string
	// Workers is how many keys are reconciled at once.
	Workers     int
	MaxRestarts int
	// PollInterval is how often Run lists the source. Zero lists it once
	// at start and then only on Resync.
	PollInterval time.Duration
	// ResyncPeriod is how long after a successful reconcile an existing
	// environment is looked at again (plus up to a tenth of it as jitter),
	// so drift is corrected without a listing. Default 5m; negative never.
	ResyncPeriod time.Duration
	// CollectInterval is how often, after a listing that worked, what
	// belongs to no environment is collected (databases, namespaces).
	// Default 10m; negative never.
	CollectInterval time.Duration
	Logger          *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Lifecycle is the policy of sleep, expiry and the cap.
	Lifecycle env.Lifecycle
	// FlushInterval is how often activity seen in memory (Touch) is
	// written to the store. Default 10s.
	FlushInterval time.Duration
	// MeterInterval is how often the runtime's Meter is sampled for the
	// cost line. Default 15s; negative never.
	MeterInterval time.Duration
	// Audit, if set, records automatic actions (a sleep, an expiry) in
	// the audit trail. The store implements it.
	Audit func(ctx context.Context, e store.AuditEntry) error
	// Rehearsal is the migration rehearsal's policy; it applies when the
	// database provider is a database.Rehearser.
	Rehearsal Rehearsal
	// SeedPath is database.postgres.seed: an SQL file of the repository
	// run after the migrations in every fresh preview database (a new
	// preview, a new tier, a reset), read at the preview's commit.
	SeedPath string
	// Specs, if set, gives each commit its app spec (handed to the
	// runtime in env.Release.Spec) and the path filters' view of a
	// change. Nil leaves the runtime's own options and filters nothing.
	Specs Specs
}

// Rehearsal is the migration rehearsal's policy (database.rehearsal).
type Rehearsal struct {
	// Enabled runs each preview's migrations against a copy of the
	// reference data before its own database.
	Enabled bool
	database.RehearseOptions
	// FailOn are the findings that fail the "previewd/migrations" check.
	FailOn []env.FailOn
}

// Reconciler owns the queue of keys and the workers that drain it.
type Reconciler struct {
	o      Options
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]
	resync chan struct{}

	mu          sync.Mutex
	desired     map[string]env.Source
	fresh       map[string]bool // keys to re-read from the forge before acting
	requests    map[string]request
	seq         uint64
	syncs       int
	listed      bool
	sourceErr   error
	lastList    time.Time
	lastCollect time.Time
	synced      chan struct{} // closed after the first successful listing
	// first holds the keys of the first listing not reconciled yet;
	// reconciled is closed once it is empty.
	first      map[string]bool
	reconciled chan struct{}

	// The cap: keys admitted whose rollout is not saved yet, and keys
	// asked to sleep to make room (see Admit).
	capMu    sync.Mutex
	claims   map[string]bool
	evicting map[string]bool

	// Activity seen in memory (Touch), and which of it is not written.
	touchMu sync.Mutex
	touched map[string]time.Time
	dirty   map[string]bool

	// The meter's last sample per key; only the meter's loop uses it.
	samples map[string]sampleAt
}

// request is what was asked of one key from outside a reconcile: a
// redeploy, or the runtime's report that its process exited. Decide sees
// it; a reconcile that handled it clears it.
type request struct {
	redeploy uint64 // sequence number of the last redeploy asked; 0 none
	exited   time.Time
	wake     uint64 // sequence number of the last wake asked; 0 none
	sleep    string // why a sleep was asked; "" none
	evicted  bool   // the sleep makes room for another preview
	reset    uint64 // sequence number of the last reset-db asked; 0 none
}

// New returns a Reconciler. Call Run to start it.
func New(o Options) *Reconciler {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.URL == nil {
		o.URL = func(string) string { return "" }
	}
	if o.ResyncPeriod == 0 {
		o.ResyncPeriod = 5 * time.Minute
	}
	if o.CollectInterval == 0 {
		o.CollectInterval = 10 * time.Minute
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 10 * time.Second
	}
	if o.MeterInterval == 0 {
		o.MeterInterval = 15 * time.Second
	}
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 2*time.Minute),
	)
	return &Reconciler{
		o:        o,
		log:      o.Logger,
		queue:    workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{Name: "environments"}),
		resync:   make(chan struct{}, 1),
		desired:  map[string]env.Source{},
		fresh:    map[string]bool{},
		requests: map[string]request{},
		synced:   make(chan struct{}),
		claims:   map[string]bool{},
		evicting: map[string]bool{},
		touched:  map[string]time.Time{},
		dirty:    map[string]bool{},
		samples:  map[string]sampleAt{},

		reconciled: make(chan struct{}),
	}
}

// Enqueue asks for key to be reconciled, re-reading it from the forge
// first when the forge can (an event said it changed).
func (r *Reconciler) Enqueue(key string) {
	r.mu.Lock()
	r.fresh[key] = true
	r.mu.Unlock()
	r.queue.Add(key)
}

// Redeploy asks for key's SHA to be tried again although it failed (the
// API's and the CLI's redeploy). The request is kept until a reconcile
// handles it.
func (r *Reconciler) Redeploy(key string) {
	r.ask(key, func(q *request, seq uint64) {
		q.redeploy = seq
		r.fresh[key] = true
	})
}

// ResetDB asks for key's preview to get a fresh database (reset-db). The
// request waits until the preview is ready, sleeping or failed, and is
// dropped if the preview goes away.
func (r *Reconciler) ResetDB(key string) {
	r.ask(key, func(q *request, seq uint64) { q.reset = seq })
}

// Exited is the runtime's report that key's process exited on its own.
// The reconcile it enqueues restarts it after a backoff, or gives up.
func (r *Reconciler) Exited(key string) {
	now := r.o.Now()
	r.ask(key, func(q *request, _ uint64) { q.exited = now })
}

// ask changes key's pending request under r.mu (seq is a new sequence
// number, for a request a reconcile must see once) and enqueues key.
func (r *Reconciler) ask(key string, change func(q *request, seq uint64)) {
	r.mu.Lock()
	r.seq++
	q := r.requests[key]
	change(&q, r.seq)
	r.requests[key] = q
	r.mu.Unlock()
	r.queue.Add(key)
}

// Resync asks Run to list the source now.
func (r *Reconciler) Resync() {
	select {
	case r.resync <- struct{}{}:
	default:
	}
}

// SourceStatus returns when the last successful listing was, and the
// error of the last listing (nil when it worked).
func (r *Reconciler) SourceStatus() (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastList, r.sourceErr
}

// Synced is closed after the first successful listing.
func (r *Reconciler) Synced() <-chan struct{} { return r.synced }

// Sync lists the source and enqueues every key that is desired or live.
// When the source cannot be reached, the existing environments stay as
// they are and the error is kept for the status.
func (r *Reconciler) Sync(ctx context.Context) error {
	srcs, err := r.o.Source.List(ctx)
	if err != nil {
		r.mu.Lock()
		first := r.sourceErr == nil
		r.sourceErr = err
		r.mu.Unlock()
		if first {
			r.log.Error("listing source", "err", err)
		}
		return err
	}
	desired := make(map[string]env.Source, len(srcs))
	// Sort so that when two branches claim one key (a hash collision),
	// the same one wins every time.
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].Branch < srcs[j].Branch })
	for _, s := range srcs {
		if env.CheckKey(s.Key) != nil {
			continue
		}
		if prev, dup := desired[s.Key]; dup {
			r.log.Warn("two changes share a key", "env", s.Key, "kept", prev.Branch, "dropped", s.Branch)
			continue
		}
		desired[s.Key] = s
	}
	live, err := r.o.Store.Live(ctx)
	if err != nil {
		return err
	}
	items, err := r.o.Store.AllItems(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.desired = desired
	wasListed := r.listed
	r.listed, r.sourceErr, r.lastList = true, nil, r.o.Now()
	r.syncs++
	full := r.syncs%fullResyncEvery == 1
	keys := changed(desired, live, items, full)
	if !wasListed {
		r.first = make(map[string]bool, len(keys))
		for _, k := range keys {
			r.first[k] = true
		}
		if len(r.first) == 0 {
			close(r.reconciled)
		}
	}
	r.mu.Unlock()
	if !wasListed {
		close(r.synced)
	}
	for _, k := range keys {
		r.queue.Add(k)
	}
	return nil
}

// Reconciled is closed once every key of the first listing since start
// has been reconciled once. Until then the store may not show every
// environment the forge wants (a fresh data dir, a new leader), so
// consumers that would delete what is missing (Argo CD's generator) and
// /readyz wait for it.
func (r *Reconciler) Reconciled() <-chan struct{} { return r.reconciled }

// attempted notes that key was reconciled once, for Reconciled.
func (r *Reconciler) attempted(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first == nil || !r.first[key] {
		return
	}
	delete(r.first, key)
	if len(r.first) == 0 {
		close(r.reconciled)
	}
}

// fullResyncEvery says how often a sync enqueues every key, not only the
// changed ones, so that drift nobody reported is still found.
const fullResyncEvery = 10

// changed returns the keys a listing asks to look at: new, moved to
// another SHA, gone, not settled, or owning leftovers. With full, every
// desired and live key.
func changed(desired map[string]env.Source, live []env.Environment, items map[string][]env.Item, full bool) []string {
	var keys []string
	seen := make(map[string]bool, len(live))
	for _, e := range live {
		seen[e.Key] = true
		d, ok := desired[e.Key]
		// Sleeping and queued previews are settled too: a request, a
		// command or a freed slot wakes them, not a listing.
		settled := e.Status == env.StatusReady || e.Status == env.StatusFailed || e.Status == env.StatusSleeping || e.Status == env.StatusQueued ||
			(e.Status == env.StatusPending && d.Hold != "" && e.Message == d.Hold)
		if full || !ok || d.SHA != e.SHA || d.Hold != "" || !settled {
			keys = append(keys, e.Key)
		}
	}
	for k := range desired {
		if !seen[k] {
			keys = append(keys, k)
			seen[k] = true
		}
	}
	for k := range items {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	return keys
}

// Run lists the source (every PollInterval and on Resync), collects
// orphans after listings that worked (every CollectInterval), and runs
// the workers, until ctx is done; then it waits for the workers to finish
// their current key. It first enqueues every live environment, so they
// are looked at even before (or without) a listing.
func (r *Reconciler) Run(ctx context.Context) {
	live, err := r.o.Store.Live(ctx)
	if err != nil {
		// The first listing enqueues them all the same.
		r.log.Error("listing live environments", "err", err)
	}
	for _, e := range live {
		r.queue.Add(e.Key)
	}
	var wg sync.WaitGroup
	for i := 0; i < r.o.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r.next(ctx) {
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.poll(ctx)
	}()
	go func() {
		defer wg.Done()
		r.tick(ctx)
	}()
	<-ctx.Done()
	r.queue.ShutDown()
	wg.Wait()
}

// poll lists the source now, on every PollInterval and on Resync, and
// collects orphans after a listing that worked when they are due.
func (r *Reconciler) poll(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.resync:
		}
		if err := r.Sync(ctx); err == nil && r.collectDue() {
			r.Collect(ctx)
		}
		if r.o.PollInterval > 0 {
			t.Reset(r.o.PollInterval)
		}
	}
}

func (r *Reconciler) next(ctx context.Context) bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	res, err := r.Reconcile(ctx, key)
	r.attempted(key)
	switch {
	case err != nil && IsTerminal(err):
		// Recorded in the status; only a change of the input helps.
		r.log.Warn("reconcile stopped", "env", key, "err", err)
		r.queue.Forget(key)
	case err != nil && ctx.Err() == nil:
		r.log.Error("reconcile failed", "env", key, "err", err)
		r.queue.AddRateLimited(key)
	case err == nil && res.RequeueAfter > 0:
		r.queue.Forget(key)
		r.queue.AddAfter(key, res.RequeueAfter)
	default:
		r.queue.Forget(key)
	}
	return true
}

// desiredFor returns what the forge wants for key: the last listing, or a
// fresh read of the key when the source can and there is reason to.
func (r *Reconciler) desiredFor(ctx context.Context, key string) (*env.Source, bool, error) {
	r.mu.Lock()
	src, ok := r.desired[key]
	listed := r.listed
	fresh := r.fresh[key]
	delete(r.fresh, key)
	r.mu.Unlock()
	// Re-read when an event said the key changed, or when it waits on
	// something the listing does not show (checks).
	if ref, can := r.o.Source.(Refresher); can && (fresh || (ok && src.Hold != "")) {
		s, found, err := ref.Refresh(ctx, key)
		if err != nil {
			r.mu.Lock()
			r.fresh[key] = true
			r.mu.Unlock()
			return nil, listed, err
		}
		r.mu.Lock()
		if found {
			r.desired[key] = s
		} else {
			delete(r.desired, key)
		}
		r.mu.Unlock()
		if !found {
			// The forge says it is gone (closed, filtered out): as
			// good as a listing for this key.
			return nil, true, nil
		}
		return &s, listed, nil
	}
	if !ok {
		return nil, listed, nil
	}
	return &src, listed, nil
}

// gather builds the one observed state Decide looks at, and returns the
// requests it saw so that a reconcile that handles them can clear them.
func (r *Reconciler) gather(ctx context.Context, key string) (Observed, request, error) {
	o := Observed{Key: key, MaxRestarts: r.o.MaxRestarts, Now: r.o.Now()}
	var err error
	if o.Desired, o.Listed, err = r.desiredFor(ctx, key); err != nil {
		return o, request{}, fmt.Errorf("reading %s from the forge: %w", key, err)
	}
	r.mu.Lock()
	req := r.requests[key]
	r.mu.Unlock()
	o.Redeploy, o.ExitedAt, o.ResetDB = req.redeploy != 0, req.exited, req.reset != 0
	o.Wake, o.SleepAsked, o.Evicted = req.wake != 0, req.sleep, req.evicted
	o.Life = r.o.Lifecycle
	rec, err := r.o.Store.GetRecord(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return o, req, err
	default:
		o.Record = &rec
	}
	o.Tier = r.tiersOf(o)
	if err := r.pathsOf(ctx, &o); err != nil {
		return o, req, err
	}
	if o.Items, err = r.o.Store.Items(ctx, key); err != nil {
		return o, req, err
	}
	mark, down, err := r.o.Store.DownMarkOf(ctx, key)
	if err != nil {
		return o, req, err
	}
	o.Down, o.DownReason, o.DownSHA = down, mark.Reason, mark.SHA
	if o.Running, o.RunningSHA, err = r.o.Runtime.Running(ctx, key); err != nil {
		return o, req, fmt.Errorf("asking the runtime about %s: %w", key, err)
	}
	o.Activity = r.activity(key, o)
	if err := r.admit(ctx, &o); err != nil {
		return o, req, err
	}
	return o, req, nil
}

// handled clears the requests of key that a reconcile saw and dealt with;
// one that came meanwhile stays.
func (r *Reconciler) handled(key string, seen request, plan Plan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q, ok := r.requests[key]
	if !ok {
		return
	}
	if q.redeploy == seen.redeploy {
		q.redeploy = 0
	}
	if q.wake == seen.wake {
		q.wake = 0
	}
	if q.sleep == seen.sleep {
		q.sleep = ""
	}
	// A reset waits for a state it can run in, unless the preview goes.
	if q.reset == seen.reset && (plan.Action == ResetDB || plan.Action == Teardown || plan.Action == Expire || plan.Reason == ReasonGone) {
		q.reset = 0
	}
	// A backoff still needs the time of the exit.
	if plan.Action != Wait && q.exited.Equal(seen.exited) {
		q.exited = time.Time{}
	}
	if q == (request{}) {
		delete(r.requests, key)
		return
	}
	r.requests[key] = q
}

// Reconcile brings one environment to its desired state: gather, Decide,
// act. It returns when to look again, or an error to retry with backoff
// (unless it is Terminal).
func (r *Reconciler) Reconcile(ctx context.Context, key string) (Result, error) {
	if err := env.CheckKey(key); err != nil {
		return Result{}, Terminal(err)
	}
	o, req, err := r.gather(ctx, key)
	if err != nil {
		return Result{}, err
	}
	defer r.unclaim(key)
	plan := Decide(o)
	if plan.Action != Nothing {
		r.log.Debug("reconciling", "env", key, "action", plan.Action.String(), "reason", plan.Reason, "message", plan.Message)
	}
	if err := r.saveActivity(ctx, o); err != nil {
		return Result{}, err
	}
	res, err := r.act(ctx, o, plan)
	r.freed(ctx, plan)
	switch plan.Action {
	case Deploy, Wake, Restart, Queue, Hold, Sleep:
		// The record may be new: save its activity and expiry now, and
		// look again at the first deadline they give (a sleep, a
		// warning, the expiry), not only at the next resync.
		if rec, gerr := r.o.Store.GetRecord(ctx, key); gerr == nil {
			after := o
			after.Record = &rec
			after.Running, after.RunningSHA = rec.Status == env.StatusReady, rec.SHA
			after.Redeploy, after.Wake, after.SleepAsked = false, false, ""
			if serr := r.saveActivity(ctx, after); serr != nil {
				err = errors.Join(err, serr)
			}
			if next := lifecycle(after, Plan{Action: Nothing}); err == nil && res.RequeueAfter == 0 && next.RequeueAfter > 0 {
				res.RequeueAfter = next.RequeueAfter
			}
		}
	}
	if err == nil || IsTerminal(err) {
		r.handled(key, req, plan)
	}
	if res.RequeueAfter > 0 && r.o.ResyncPeriod > 0 {
		// A far deadline (a TTL days away) must not skip the resync.
		res.RequeueAfter = min(res.RequeueAfter, r.resyncAfter())
	}
	if err != nil || res.RequeueAfter > 0 || plan.Terminal {
		return res, err
	}
	// Settled: look again later, so drift (a process gone, an object
	// changed by hand) is found without a listing. What is removed, or
	// never was, is not looked at again until something names it.
	if plan.Action == Teardown || (o.Desired == nil && !o.live()) {
		return Result{}, nil
	}
	return Result{RequeueAfter: r.resyncAfter()}, nil
}

// resyncAfter is ResyncPeriod plus up to a tenth of it, so that keys
// reconciled together do not come back together; zero when resync is off.
func (r *Reconciler) resyncAfter() time.Duration {
	p := r.o.ResyncPeriod
	if p <= 0 {
		return 0
	}
	return p + rand.N(p/10+1)
}
