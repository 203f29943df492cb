package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// Reasons recorded in the event history.
const (
	ReasonBuilding      = "Building"
	ReasonMigrating     = "Migrating"
	ReasonStarting      = "Starting"
	ReasonReady         = "Ready"
	ReasonFailed        = "Failed"
	ReasonRestarted     = "Restarted"
	ReasonRestartFailed = "RestartFailed"
	ReasonHeld          = "Held"
	ReasonDeleting      = "Deleting"
	ReasonRemoved       = "Removed"
	ReasonRetrying      = "RemovalRetrying"
	ReasonWaiting       = "Waiting"
	ReasonQueued        = "Queued"
	ReasonSlept         = "Slept"
	ReasonSleepFailed   = "SleepFailed"
	ReasonWaking        = "Waking"
	ReasonRehearsing    = "Rehearsing"
	ReasonRehearsed     = "Rehearsed"
)

// act executes plan. Every path that changes the environment ends in an
// outcome that finish saves, with an event, in a deferred call.
func (r *Reconciler) act(ctx context.Context, o Observed, plan Plan) (Result, error) {
	switch plan.Action {
	case Nothing, Wait:
		return Result{RequeueAfter: plan.RequeueAfter}, nil
	case Hold:
		return r.hold(ctx, plan)
	case Deploy, Restart, Wake:
		return r.deploy(ctx, o, plan)
	case GiveUp:
		return r.giveUp(ctx, plan)
	case Teardown:
		return r.teardown(ctx, o, plan)
	case Queue:
		return r.enqueue(ctx, o, plan)
	case Sleep:
		return r.sleep(ctx, o, plan)
	case Expire:
		return r.expire(ctx, o, plan)
	case Warn:
		return r.warn(ctx, o, plan)
	case ResetDB:
		return r.resetDB(ctx, o, plan)
	case Skip:
		return r.skip(ctx, o, plan)
	}
	return Result{}, nil
}

// progress is one act on one environment: it saves the status changes
// along the way and, through finish, the one it ends in.
type progress struct {
	r     *Reconciler
	src   env.Source
	start time.Time
	// exists is true once the environment has a stored record: only then
	// are status and events saved.
	exists bool
}

// outcome is the status an act ends in.
type outcome struct {
	status        *env.Status // nil leaves the status as it is
	reason, msg   string
	u             store.Update
	tail          string
	removed, left []string
	// silent saves without telling the notifiers.
	silent bool
	// expired marks the removal by the TTL; warning is the TTL warning's
	// expiry (see env.Notice).
	expired bool
	warning *time.Time
}

func (r *Reconciler) progress(src env.Source, exists bool) *progress {
	return &progress{r: r, src: src, start: r.o.Now(), exists: exists}
}

// set saves a status change along the way, with an event, and tells the
// notifiers.
func (p *progress) set(ctx context.Context, status env.Status, reason, msg string, u store.Update) error {
	return p.save(ctx, &outcome{status: &status, reason: reason, msg: msg, u: u})
}

func (p *progress) save(ctx context.Context, out *outcome) error {
	if !p.exists {
		return nil
	}
	u := out.u
	u.Status, u.Message = out.status, &out.msg
	if err := p.r.o.Store.Set(ctx, p.src.Key, u); err != nil {
		return err
	}
	if err := p.r.o.Store.AddEvent(ctx, p.src.Key, env.Event{Reason: out.reason, Message: out.msg, SHA: p.src.SHA}); err != nil {
		return err
	}
	if !out.silent {
		p.notify(ctx, out)
	}
	return nil
}

// finish saves what the act ended in, or, when it returned an error
// without saying, that it failed. It returns err joined with any error of
// saving.
func (p *progress) finish(ctx context.Context, out *outcome, err error) error {
	if out == nil {
		if err == nil || ctx.Err() != nil {
			return err
		}
		failed := env.StatusFailed
		out = &outcome{status: &failed, reason: ReasonFailed, msg: err.Error()}
	}
	if serr := p.save(ctx, out); serr != nil {
		return errors.Join(err, fmt.Errorf("saving the status of %s: %w", p.src.Key, serr))
	}
	return err
}

func (p *progress) notify(ctx context.Context, out *outcome) {
	if len(p.r.o.Notifiers) == 0 {
		return
	}
	e, err := p.r.o.Store.Get(ctx, p.src.Key)
	if err != nil {
		p.r.log.Error("reading environment to notify", "env", p.src.Key, "err", err)
		return
	}
	if e.Usage != nil {
		u := e.Usage.Priced(p.r.o.Lifecycle.Rates)
		e.Usage = &u
	}
	if rh, err := p.r.o.Store.Rehearsal(ctx, p.src.Key); err == nil {
		e.Rehearsal = &rh
	}
	n := env.Notice{Env: e, Source: p.src, Took: p.r.o.Now().Sub(p.start), Tail: out.tail, Removed: out.removed, Left: out.left,
		Reason: out.reason, Expired: out.expired, Warning: out.warning}
	for _, nt := range p.r.o.Notifiers {
		if err := nt.Notify(ctx, n); err != nil {
			// A notification failing must not stop the environment; the
			// next change notifies again.
			p.r.log.Warn("notifying", "env", p.src.Key, "err", err)
		}
	}
}

func (r *Reconciler) hold(ctx context.Context, plan Plan) (_ Result, err error) {
	src := plan.Source
	p := r.progress(src, false)
	var out *outcome
	defer func() { err = p.finish(ctx, out, err) }()
	if err := r.o.Store.Upsert(ctx, src); err != nil {
		return Result{}, err
	}
	p.exists = true
	pending := env.StatusPending
	out = &outcome{status: &pending, reason: ReasonHeld, msg: src.Hold}
	return Result{}, nil
}

// deploy rolls the environment out at the plan's SHA: build, database,
// migrate, start; or, for a restart, only database and start. A failure of
// the app's own steps is terminal for this SHA; a wait requeues; any other
// error is returned to be retried with backoff.
func (r *Reconciler) deploy(ctx context.Context, o Observed, plan Plan) (res Result, err error) {
	src := plan.Source
	key := src.Key
	restart := plan.Action == Restart
	wake := plan.Action == Wake
	p := r.progress(src, false)
	var out *outcome
	defer func() { err = p.finish(ctx, out, err) }()
	if err := r.o.Store.Upsert(ctx, src); err != nil {
		return Result{}, err
	}
	p.exists = true
	if o.Down {
		// An expired preview revived by a new commit (Decide deploys
		// nothing else that is down).
		if _, err := r.o.Store.ClearDown(ctx, key); err != nil {
			return Result{}, err
		}
	}
	url := r.o.URL(key)
	short := env.ShortSHA(src.SHA)
	oldSHA := ""
	if o.Running {
		oldSHA = o.RunningSHA
	}
	restarts := 0
	if restart {
		// A process that ran for a good while since the last restart
		// crashed anew, not in a loop: its count starts again.
		restarts = RecentRestarts(*o.Record, o.Now) + 1
		r.log.Info("restarting", "env", key, "sha", short, "restarts", restarts)
		if err := r.o.Store.AddEvent(ctx, key, env.Event{Reason: ReasonRestarted, Message: fmt.Sprintf("process exited; restart %d of %d", restarts, r.o.MaxRestarts), SHA: src.SHA}); err != nil {
			return Result{}, err
		}
	} else if wake {
		r.log.Info("waking", "env", key, "sha", short, "reason", plan.Reason)
		if err := p.set(ctx, env.StatusStarting, ReasonWaking, plan.Message, store.Update{URL: &url, QueuedAt: &time.Time{}}); err != nil {
			return Result{}, err
		}
	} else {
		r.log.Info("deploying", "env", key, "sha", short, "reason", plan.Reason)
		sha := src.SHA
		if err := p.set(ctx, env.StatusBuilding, ReasonBuilding, "building "+short, store.Update{SHA: &sha, URL: &url, QueuedAt: &time.Time{}}); err != nil {
			return Result{}, err
		}
	}
	rel := &env.Release{Source: src, URL: url, Vars: env.Vars(src, url)}
	if rel.Spec, err = r.specOf(ctx, src); err != nil {
		out, err = r.stepFailed(src, err, oldSHA)
		return Result{}, err
	}
	if err := r.o.Runtime.Prepare(ctx, rel); err != nil {
		var we *env.WaitError
		if errors.As(err, &we) {
			out, res = r.waiting(we)
			return res, nil
		}
		out, err = r.stepFailed(src, err, oldSHA)
		return Result{}, err
	}

	target := database.Target{Key: key, Production: src.Production()}
	if err := r.provisionTier(ctx, o, plan, &target, rel); err != nil {
		return Result{}, err
	}
	// A database not recorded before is made now: fresh, so seeded.
	fresh := false
	for _, it := range r.o.Database.Items(target) {
		fresh = fresh || !inventory.Has(o.Items, inventory.IDOf(it))
		if err := r.o.Store.PutItem(ctx, key, it); err != nil {
			return Result{}, err
		}
	}
	conn, err := r.o.Database.Ensure(ctx, target)
	if err != nil {
		failed := env.StatusFailed
		out = &outcome{status: &failed, reason: ReasonFailed, msg: "database: " + err.Error()}
		return Result{}, fmt.Errorf("ensuring database: %w", err)
	}
	maps.Copy(rel.Vars, conn.Vars)
	dbName := conn.Name
	if err := r.o.Store.Set(ctx, key, store.Update{Database: &dbName}); err != nil {
		return Result{}, err
	}

	if !restart && !wake {
		if err := r.rehearse(ctx, p, target, rel); err != nil {
			out, err = r.stepFailed(src, err, oldSHA)
			return Result{}, err
		}
		if err := p.set(ctx, env.StatusMigrating, ReasonMigrating, "migrating "+short, store.Update{}); err != nil {
			return Result{}, err
		}
		if err := r.o.Runtime.Migrate(ctx, rel); err != nil {
			out, err = r.stepFailed(src, err, oldSHA)
			return Result{}, err
		}
		if fresh {
			if err := r.seed(ctx, rel, conn); err != nil {
				out, err = r.stepFailed(src, err, oldSHA)
				return Result{}, err
			}
		}
		if err := p.set(ctx, env.StatusStarting, ReasonStarting, "starting "+short, store.Update{}); err != nil {
			return Result{}, err
		}
	}
	if err := r.o.Runtime.Deploy(ctx, rel); err != nil {
		if restart {
			// A failed restart is one more crash, not a verdict on the
			// SHA: count it; Decide restarts again after a backoff, or
			// gives up once the restarts are used up.
			out = &outcome{reason: ReasonRestartFailed, msg: fmt.Sprintf("restart %d of %d failed: %v", restarts, r.o.MaxRestarts, err), u: store.Update{Restarts: &restarts}, silent: true}
			r.log.Warn("restart failed", "env", key, "sha", short, "restarts", restarts, "err", err)
			return Result{RequeueAfter: RestartBackoff(restarts)}, nil
		}
		out, err = r.stepFailed(src, err, oldSHA)
		return Result{}, err
	}
	took := r.o.Now().Sub(p.start).Round(time.Millisecond)
	empty := ""
	msg := fmt.Sprintf("%s ready in %s", short, took)
	if restart {
		msg = fmt.Sprintf("%s restarted after the process exited (%d of %d)", short, restarts, r.o.MaxRestarts)
	}
	if wake {
		msg = fmt.Sprintf("%s woke in %s", short, took)
	}
	for _, w := range rel.Warnings {
		msg += "\n" + w
	}
	if !restart {
		// Ready is activity: sleepAfter counts from when it can be
		// used, not from a push a long build began with.
		r.Touch(key)
	}
	ready := env.StatusReady
	// The runtime may have found the real URL (e.g. an Ingress host).
	out = &outcome{status: &ready, reason: ReasonReady, msg: msg,
		u: store.Update{Ready: !restart && !wake, FailedSHA: &empty, Restarts: &restarts, URL: &rel.URL, Deployed: &src}}
	r.log.Info("ready", "env", key, "sha", short, "took", took)
	return Result{}, nil
}

// waiting is the outcome of an environment that cannot go on yet (e.g.
// its image is not in the registry): pending, looked at again after a
// delay, with jitter.
func (r *Reconciler) waiting(we *env.WaitError) (*outcome, Result) {
	pending := env.StatusPending
	after := we.After
	if after <= 0 {
		after = 10 * time.Second
	}
	return &outcome{status: &pending, reason: ReasonWaiting, msg: we.Reason}, Result{RequeueAfter: after + rand.N(after/5+1)}
}

// stepFailed is the outcome of a failed step. The app's own failures
// (env.StepError) are terminal for the SHA; others are returned for a
// retry.
func (r *Reconciler) stepFailed(src env.Source, err error, oldSHA string) (*outcome, error) {
	failed := env.StatusFailed
	var se *env.StepError
	if !errors.As(err, &se) {
		return &outcome{status: &failed, reason: ReasonFailed, msg: err.Error()}, err
	}
	msg := fmt.Sprintf("%s of %s failed: %v", se.Step, env.ShortSHA(src.SHA), se.Err)
	if oldSHA != "" && oldSHA != src.SHA {
		msg += fmt.Sprintf("; still serving %s", env.ShortSHA(oldSHA))
	}
	if se.Tail != "" {
		msg += "\n" + se.Tail
	}
	sha := src.SHA
	return &outcome{status: &failed, reason: ReasonFailed, msg: msg, u: store.Update{FailedSHA: &sha}, tail: se.Tail}, Terminal(err)
}

// giveUp marks an environment whose process keeps exiting failed for its
// SHA, with the end of its output.
func (r *Reconciler) giveUp(ctx context.Context, plan Plan) (_ Result, err error) {
	src := plan.Source
	p := r.progress(src, true)
	tail := r.logTail(ctx, src.Key)
	msg := plan.Message
	if tail != "" {
		msg += "\n" + tail
	}
	sha := src.SHA
	failed := env.StatusFailed
	r.log.Warn("gave up restarting", "env", src.Key, "sha", env.ShortSHA(sha))
	return Result{}, p.finish(ctx, &outcome{status: &failed, reason: ReasonFailed, msg: msg, u: store.Update{FailedSHA: &sha}, tail: tail}, nil)
}

// logTail returns the end of the environment's output, when the runtime
// keeps it.
func (r *Reconciler) logTail(ctx context.Context, key string) string {
	l, ok := r.o.Runtime.(runtime.Logs)
	if !ok {
		return ""
	}
	t, err := l.Logs(ctx, key, 20)
	if err != nil && !errors.Is(err, runtime.ErrNoLogs) {
		r.log.Warn("reading logs", "env", key, "err", err)
	}
	return t
}

// teardown removes everything in the environment's inventory: the
// runtime's part first, then the database. What fails to go stays in the
// inventory and is retried.
func (r *Reconciler) teardown(ctx context.Context, o Observed, plan Plan) (_ Result, err error) {
	src := plan.Source
	key := src.Key
	if src.Production() || key == env.ProductionKey {
		return Result{}, Terminal(errors.New("refusing to tear down production"))
	}
	p := r.progress(src, o.Record != nil)
	var out *outcome
	defer func() { err = p.finish(ctx, out, err) }()
	r.log.Info("tearing down", "env", key)
	if o.live() && o.Record.Status != env.StatusDeleting {
		if err := p.set(ctx, env.StatusDeleting, ReasonDeleting, "removing", store.Update{}); err != nil {
			return Result{}, err
		}
	}
	var errs []error
	if err := r.o.Runtime.Delete(ctx, key, o.Items); err != nil {
		errs = append(errs, fmt.Errorf("runtime: %w", err))
	}
	// The app may still run (e.g. its namespace still terminating): the
	// database goes only once the runtime's part is gone.
	if len(errs) == 0 {
		if err := r.o.Database.Drop(ctx, dbItems(o.Items)); err != nil {
			errs = append(errs, fmt.Errorf("database: %w", err))
		} else {
			for _, it := range dbItems(o.Items) {
				if err := r.o.Store.DeleteItem(ctx, key, it); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	left, err := r.o.Store.Items(ctx, key)
	if err != nil {
		return Result{}, err
	}
	removed, remaining := describe(o.Items, left)
	if len(errs) > 0 || len(left) > 0 {
		err := errors.Join(errs...)
		if err == nil {
			err = fmt.Errorf("%d items left", len(left))
		}
		out = &outcome{reason: ReasonRetrying, msg: "removal failed and is being retried: " + err.Error(), removed: removed, left: remaining}
		return Result{}, err
	}
	took := r.o.Now().Sub(p.start).Round(time.Millisecond)
	msg := fmt.Sprintf("removed in %s", took)
	if len(removed) > 0 {
		msg = fmt.Sprintf("removed %s in %s", strings.Join(removed, ", "), took)
	}
	deleting := env.StatusDeleting
	if plan.Action == Expire {
		msg = plan.Message + "; " + msg
	}
	out = &outcome{status: &deleting, reason: ReasonRemoved, msg: msg, removed: removed, expired: plan.Action == Expire,
		u: store.Update{Deleted: o.Record != nil && o.Record.DeletedAt == nil}}
	r.forgetActivity(key)
	r.log.Info("removed", "env", key, "took", took)
	return Result{}, nil
}

func dbItems(items []env.Item) []env.Item {
	var out []env.Item
	for _, it := range items {
		switch it.Kind {
		case env.ItemSQLite, env.ItemRole, env.ItemSchema, env.ItemDatabase:
			out = append(out, it)
		}
	}
	return out
}

// describe names, for people, the items that were removed and those left.
func describe(before, after []env.Item) (removed, left []string) {
	seen := map[string]bool{}
	for _, it := range before {
		name := label(it)
		if seen[name] {
			continue
		}
		seen[name] = true
		if inventory.Has(after, inventory.IDOf(it)) {
			left = append(left, name)
		} else {
			removed = append(removed, name)
		}
	}
	return removed, left
}

func label(it env.Item) string {
	switch it.Kind {
	case env.ItemWorkDir:
		return "work dir"
	case env.ItemProcess:
		return "process"
	case env.ItemSQLite:
		return "database file"
	case env.ItemRole:
		return "role " + it.Name
	case env.ItemSchema:
		return "schema " + it.Name
	case env.ItemDatabase:
		return "database " + it.Name
	case env.ItemNamespace:
		return "namespace " + it.Name
	}
	return inventory.IDOf(it).String()
}
