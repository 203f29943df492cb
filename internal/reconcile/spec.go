package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/previewd/previewd/internal/env"
)

// Specs gives each commit its app spec and tells which files a change
// touches (appspec.Reader).
type Specs interface {
	// Spec returns the app spec of src's commit. A bad repository file
	// is an *env.StepError: terminal for the commit.
	Spec(ctx context.Context, src env.Source) (env.AppSpec, error)
	// Touched returns the files src's commit changes since commit since
	// (what a push brings to the deployed one), or, when since is empty,
	// since its merge base with src's base; nil when that cannot be told.
	Touched(ctx context.Context, src env.Source, since string) ([]string, error)
}

// specOf returns the app spec the runtime rolls src out with; nil without
// Specs.
func (r *Reconciler) specOf(ctx context.Context, src env.Source) (*env.AppSpec, error) {
	if r.o.Specs == nil {
		return nil, nil
	}
	s, err := r.o.Specs.Spec(ctx, src)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// pathsOf fills o.Paths and o.Touched when the path filters can matter:
// a change that is not production, not held and not deployed (or tried)
// at its commit yet. Touched is what the change brings since its base,
// or, when an earlier commit of it runs, what it brings since that one
// (a docs-only push to a deployed change is no reason to redeploy). A
// bad repository file leaves them empty: the deploy fails with it.
func (r *Reconciler) pathsOf(ctx context.Context, o *Observed) error {
	d := o.Desired
	if r.o.Specs == nil || d == nil || d.Hold != "" || d.Production() || o.Key == env.ProductionKey {
		return nil
	}
	if o.live() && o.Record.SHA == d.SHA {
		return nil
	}
	spec, err := r.o.Specs.Spec(ctx, *d)
	var se *env.StepError
	if errors.As(err, &se) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the app spec of %s: %w", o.Key, err)
	}
	if len(spec.Paths) == 0 {
		return nil
	}
	since := ""
	if o.serving() {
		since = o.Record.Deployed.SHA
	}
	touched, err := r.o.Specs.Touched(ctx, *d, since)
	if err != nil {
		return fmt.Errorf("comparing %s with its base: %w", o.Key, err)
	}
	o.Paths, o.Touched = spec.Paths, touched
	return nil
}

// serving reports whether the stored environment has a deployed commit
// that a skipped one leaves running.
func (o Observed) serving() bool {
	return o.live() && o.Record.Deployed != nil && o.Record.SHA != ""
}

// pathFilter is the plan of a change whose diff touches none of its path
// filters: it gets no environment (a pending record that says why), or
// keeps the one it has at its commit, deciding for that one as usual (a
// restart, a sleep) and saying once why the new commit is not deployed.
// A redeploy asked for deploys all the same; production always deploys.
// ok is false when the filters let the change through.
func pathFilter(o Observed) (_ Plan, ok bool) {
	d := *o.Desired
	if len(o.Paths) == 0 || o.Touched == nil || o.Redeploy || o.production() {
		return Plan{}, false
	}
	if (env.AppSpec{Paths: o.Paths}).Touches(o.Touched) {
		return Plan{}, false
	}
	rec := o.Record
	if o.live() && rec.SHA == d.SHA {
		return Plan{}, false
	}
	under := "no changes under " + strings.Join(o.Paths, ", ")
	if !o.serving() {
		msg := under + "; not deployed"
		if o.live() && rec.Status == env.StatusPending && rec.Message == msg {
			return Plan{Action: Nothing, Source: d, Reason: ReasonSkippedAlready, Message: msg}, true
		}
		return Plan{Action: Skip, Source: d, Reason: ReasonNoPathChanges, Message: msg}, true
	}
	// Decide for what runs as if the change were still at its commit.
	kept := d
	if rec.Deployed.SHA == rec.SHA {
		kept = *rec.Deployed
	}
	kept.SHA = rec.SHA
	as := o
	as.Desired, as.Paths, as.Touched = &kept, nil, nil
	if p := decide(as); p.Action != Nothing {
		return p, true
	}
	msg := fmt.Sprintf("%s in %s; still serving %s", under, env.ShortSHA(d.SHA), env.ShortSHA(rec.Deployed.SHA))
	if rec.Message == msg {
		return Plan{Action: Nothing, Source: d, Reason: ReasonSkippedAlready, Message: msg}, true
	}
	return Plan{Action: Skip, Source: d, Reason: ReasonNoPathChanges, Message: msg}, true
}

// skip saves why the change's commit is not deployed, and tells the
// notifiers: pending when nothing was deployed, else leaving the status
// (and what runs) as it is.
func (r *Reconciler) skip(ctx context.Context, o Observed, plan Plan) (_ Result, err error) {
	src := plan.Source
	p := r.progress(src, false)
	var out *outcome
	defer func() { err = p.finish(ctx, out, err) }()
	if err := r.o.Store.Upsert(ctx, src); err != nil {
		return Result{}, err
	}
	p.exists = true
	out = &outcome{reason: ReasonNoPathChanges, msg: plan.Message}
	if !o.serving() {
		pending := env.StatusPending
		out.status = &pending
	}
	r.log.Info("not deployed", "env", src.Key, "sha", env.ShortSHA(src.SHA), "reason", plan.Message)
	return Result{}, nil
}
