package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// The lifecycle's acts: queue, sleep, expire, warn (wake is deploy's).

// enqueue records that the preview waits for a running slot, at its
// place, with the commit it waits to deploy.
func (r *Reconciler) enqueue(ctx context.Context, o Observed, plan Plan) (_ Result, err error) {
	src := plan.Source
	p := r.progress(src, false)
	var out *outcome
	defer func() { err = p.finish(ctx, out, err) }()
	if err := r.o.Store.Upsert(ctx, src); err != nil {
		return Result{}, err
	}
	p.exists = true
	if o.Down {
		// An expired preview revived by a new commit waits its turn.
		if _, err := r.o.Store.ClearDown(ctx, src.Key); err != nil {
			return Result{}, err
		}
	}
	u := store.Update{SHA: &src.SHA}
	if !o.live() || o.Record.Status != env.StatusQueued || o.Record.QueuedAt.IsZero() {
		at := o.Now.Truncate(time.Millisecond)
		u.QueuedAt = &at
	}
	queued := env.StatusQueued
	out = &outcome{status: &queued, reason: ReasonQueued, msg: plan.Message, u: u}
	r.log.Info("queued", "env", src.Key, "message", plan.Message)
	return Result{}, nil
}

// sleep stops what runs of the preview and keeps the rest. A sleep that
// fails is reported and retried with backoff.
func (r *Reconciler) sleep(ctx context.Context, o Observed, plan Plan) (_ Result, err error) {
	src := plan.Source
	key := src.Key
	if o.production() {
		return Result{}, Terminal(ErrProduction)
	}
	p := r.progress(src, true)
	var out *outcome
	defer func() { err = p.finish(ctx, out, err) }()
	if plan.Reason != ReasonSleepRequested {
		// An automatic action is audited before it is done, as a
		// person's is where they ask for it.
		r.audit(ctx, key, "sleep", plan.Message)
	}
	// Sleeping is said first, so that a request arriving while the
	// process stops wakes it again rather than finding it gone.
	if err := p.set(ctx, env.StatusSleeping, ReasonSlept, plan.Message, store.Update{}); err != nil {
		return Result{}, err
	}
	var serr error
	switch rt := r.o.Runtime.(type) {
	case runtime.Sleeper:
		serr = rt.Sleep(ctx, key)
	case runtime.Stopper:
		serr = rt.Stop(ctx, key)
	default:
		serr = errors.New("this runtime cannot put environments to sleep")
	}
	if serr != nil {
		r.log.Warn("sleep failed", "env", key, "err", serr)
		ready := env.StatusReady
		out = &outcome{status: &ready, reason: ReasonSleepFailed, msg: "sleep failed and is being retried: " + serr.Error()}
		return Result{}, fmt.Errorf("putting %s to sleep: %w", key, serr)
	}
	r.log.Info("asleep", "env", key, "reason", plan.Reason)
	return Result{}, nil
}

// expire removes a preview past its TTL as a closed change would be, and
// keeps it down at its commit: the mark is stored first, so a crash
// half-way still leaves it down.
func (r *Reconciler) expire(ctx context.Context, o Observed, plan Plan) (Result, error) {
	key := plan.Source.Key
	if o.production() {
		return Result{}, Terminal(ErrProduction)
	}
	sha := plan.Source.SHA
	if o.Record != nil && o.Record.SHA != "" {
		sha = o.Record.SHA
	}
	if err := r.o.Store.SetExpired(ctx, key, sha); err != nil {
		return Result{}, err
	}
	r.audit(ctx, key, "expire", plan.Message)
	r.log.Info("expired", "env", key, "sha", env.ShortSHA(sha))
	return r.teardown(ctx, o, plan)
}

// warn says on the PR, once per expiry, when the TTL will remove the
// preview. Status and message stay as they are.
func (r *Reconciler) warn(ctx context.Context, o Observed, plan Plan) (Result, error) {
	key := plan.Source.Key
	exp := Expiry(o)
	if err := r.o.Store.Set(ctx, key, store.Update{WarnedFor: &exp}); err != nil {
		return Result{}, err
	}
	if err := r.o.Store.AddEvent(ctx, key, env.Event{Reason: ReasonExpiryWarning, Message: plan.Message, SHA: plan.Source.SHA}); err != nil {
		return Result{}, err
	}
	p := r.progress(plan.Source, true)
	p.notify(ctx, &outcome{reason: ReasonExpiryWarning, msg: plan.Message, warning: &exp})
	r.log.Info("expiry warned", "env", key, "expires", exp)
	// Look again at the expiry.
	return Result{RequeueAfter: max(exp.Sub(o.Now), 10*time.Millisecond)}, nil
}

// audit records an automatic action in the audit trail.
func (r *Reconciler) audit(ctx context.Context, key, action, detail string) {
	if r.o.Audit == nil {
		return
	}
	if err := r.o.Audit(ctx, store.AuditEntry{Actor: "previewd", Action: action, Via: "lifecycle", Key: key, Detail: detail}); err != nil {
		r.log.Warn("recording an automatic action", "env", key, "action", action, "err", err)
	}
}
