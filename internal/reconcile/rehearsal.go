package reconcile

import (
	"context"
	"errors"
	"maps"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// rehearse runs the release's migrations against a copy of the reference
// data first, when the policy and the provider allow it, and stores the
// report (the comment, the dashboard, the API and the commit status show
// it). A migration that fails there fails the rollout before the
// preview's own database is touched (an *env.StepError with the
// statement and the error). A rehearsal that cannot be made is reported as
// skipped, and the rollout goes on.
func (r *Reconciler) rehearse(ctx context.Context, p *progress, target database.Target, rel *env.Release) error {
	rh, ok := r.o.Database.(database.Rehearser)
	if !ok || !r.o.Rehearsal.Enabled || target.Production {
		return nil
	}
	src := rel.Source
	key := src.Key
	short := env.ShortSHA(src.SHA)
	if err := p.set(ctx, env.StatusMigrating, ReasonRehearsing, "rehearsing the migrations of "+short, store.Update{}); err != nil {
		return err
	}
	items := rh.RehearsalItems(target)
	for _, it := range items {
		if err := r.o.Store.PutItem(ctx, key, it); err != nil {
			return err
		}
	}
	var merr error // the migrate step's own error, with its output
	migrate := func(ctx context.Context, c database.Conn) error {
		rr := *rel
		rr.Rehearsal = true
		rr.Warnings = nil
		rr.Vars = maps.Clone(rel.Vars)
		maps.Copy(rr.Vars, c.Vars)
		merr = r.o.Runtime.Migrate(ctx, &rr)
		return merr
	}
	rep, err := rh.Rehearse(ctx, target, r.o.Rehearsal.RehearseOptions, migrate)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		// Rehearse dropped it; after an error it may be left, and stays
		// in the inventory for teardown to drop.
		for _, it := range items {
			if derr := r.o.Store.DeleteItem(ctx, key, it); derr != nil {
				return derr
			}
		}
	} else {
		r.log.Warn("migration rehearsal not made", "env", key, "sha", short, "err", err)
		rep = env.Rehearsal{Skipped: err.Error(), StatementCount: -1, At: r.o.Now().UTC()}
	}
	if errors.Is(merr, env.ErrNotRehearsable) {
		// The runtime could not point migrate at the copy: nothing was
		// rehearsed, and the rollout goes on.
		r.log.Warn("migration rehearsal not made", "env", key, "sha", short, "err", merr)
		rep = env.Rehearsal{Skipped: merr.Error(), StatementCount: -1, At: r.o.Now().UTC()}
	}
	rep.SHA = src.SHA
	rep.Failing = rep.Judge(r.o.Rehearsal.FailOn)
	if err := r.o.Store.SetRehearsal(ctx, key, rep); err != nil {
		return err
	}
	if err := r.o.Store.AddEvent(ctx, key, env.Event{Reason: ReasonRehearsed, Message: rep.Summary(), SHA: src.SHA}); err != nil {
		return err
	}
	if rep.Error != "" {
		se := &env.StepError{Step: "migration rehearsal", Err: errors.New(rep.Error)}
		var me *env.StepError
		if errors.As(merr, &me) {
			se.Tail = me.Tail
		}
		return se
	}
	return nil
}
