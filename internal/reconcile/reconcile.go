package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
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

// Runtime runs environments.
type Runtime interface {
	// Prepare makes the release's code ready to run (checkout, build).
	Prepare(ctx context.Context, rel *env.Release) error
	// Migrate runs the migrate command for the release.
	Migrate(ctx context.Context, rel *env.Release) error
	// Deploy starts the release and routes to it once healthy.
	Deploy(ctx context.Context, rel *env.Release) error
	// Running reports whether the environment runs, and at which SHA.
	Running(ctx context.Context, key string) (running bool, sha string, err error)
	// Delete removes everything the runtime made for the environment.
	Delete(ctx context.Context, key string, items []env.Item) error
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
	Runtime  Runtime
	// Notifiers are told about every status change.
	Notifiers []Notifier
	// URL returns an environment's URL.
	URL func(key string) string
	// Workers is how many keys are reconciled at once.
	Workers     int
	MaxRestarts int
	Logger      *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Reconciler owns the queue of keys and the workers that drain it.
type Reconciler struct {
	o     Options
	log   *slog.Logger
	queue workqueue.TypedRateLimitingInterface[string]

	mu        sync.Mutex
	desired   map[string]env.Source
	fresh     map[string]bool // keys to re-read from the forge before acting
	syncs     int
	listed    bool
	sourceErr error
	lastList  time.Time
	synced    chan struct{} // closed after the first successful listing
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
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 2*time.Minute),
	)
	return &Reconciler{
		o:       o,
		log:     o.Logger,
		queue:   workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{Name: "environments"}),
		desired: map[string]env.Source{},
		fresh:   map[string]bool{},
		synced:  make(chan struct{}),
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

// EnqueueAfter asks for key to be reconciled after d.
func (r *Reconciler) EnqueueAfter(key string, d time.Duration) { r.queue.AddAfter(key, d) }

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
	r.mu.Unlock()
	if !wasListed {
		close(r.synced)
	}
	for _, k := range changed(desired, live, items, full) {
		r.queue.Add(k)
	}
	return nil
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
		settled := e.Status == env.StatusReady || e.Status == env.StatusFailed || (e.Status == env.StatusPending && d.Hold != "" && e.Message == d.Hold)
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

// Run starts the workers and blocks until ctx is done, then waits for them
// to finish their current key. It first enqueues every live environment,
// so they are looked at even before (or without) a listing.
func (r *Reconciler) Run(ctx context.Context) {
	if live, err := r.o.Store.Live(ctx); err == nil {
		for _, e := range live {
			r.queue.Add(e.Key)
		}
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
	<-ctx.Done()
	r.queue.ShutDown()
	wg.Wait()
}

func (r *Reconciler) next(ctx context.Context) bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	requeue, err := r.Reconcile(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.Error("reconcile failed", "env", key, "err", err)
		r.queue.AddRateLimited(key)
	case requeue > 0:
		r.queue.Forget(key)
		r.queue.AddAfter(key, requeue)
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

// Reconcile brings one environment to its desired state. It returns a
// delay after which to look again, or an error to retry with backoff.
func (r *Reconciler) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	desired, listed, err := r.desiredFor(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("reading %s from the forge: %w", key, err)
	}
	st := State{Desired: desired, Listed: listed, MaxRestarts: r.o.MaxRestarts, Now: r.o.Now()}
	rec, err := r.o.Store.GetRecord(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return 0, err
	default:
		st.Record = &rec
	}
	// The forge has not answered since previewd started (it may be
	// unreachable): keep what was deployed running, restarting it if it
	// is gone, and decide nothing else until a listing works.
	fallback := desired == nil && !listed && st.Record != nil && st.Record.DeletedAt == nil && st.Record.Deployed != nil
	if fallback {
		st.Desired = st.Record.Deployed
	}
	if st.Items, err = r.o.Store.Items(ctx, key); err != nil {
		return 0, err
	}
	if st.Running, st.RunningSHA, err = r.o.Runtime.Running(ctx, key); err != nil {
		return 0, err
	}
	action := Decide(st)
	if fallback && action != Restart && action != GiveUp {
		action = Nothing
	}
	if action != Nothing {
		r.log.Debug("reconciling", "env", key, "action", action.String())
	}
	switch action {
	case Hold:
		return 0, r.hold(ctx, *st.Desired)
	case Deploy:
		return 0, r.deploy(ctx, *st.Desired, st, false)
	case Restart:
		return 0, r.deploy(ctx, *st.Desired, st, true)
	case GiveUp:
		return 0, r.giveUp(ctx, *st.Desired, rec)
	case Teardown:
		return 0, r.teardown(ctx, key, st)
	}
	return 0, nil
}
