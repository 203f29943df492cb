package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// Reasons of reset-db and the seed.
const (
	ReasonResetting   = "ResettingDatabase"
	ReasonReset       = "DatabaseReset"
	ReasonResetFailed = "DatabaseResetFailed"
)

// restarter is implemented by providers whose apps must be restarted after
// a reset to see the fresh database (SQLite: an open file keeps the old
// one).
type restarter interface{ RestartAfterReset() bool }

// resetDB gives the preview a fresh database while the old one serves: the
// provider builds it beside the current one, the release's migrations (and
// the seed) run there, and only then is it swapped in. A failure keeps the
// old database and says why; it is not retried. A failed preview is then
// deployed again; a sleeping one stays asleep.
func (r *Reconciler) resetDB(ctx context.Context, o Observed, plan Plan) (_ Result, err error) {
	src := plan.Source
	key := src.Key
	if src.Production() || key == env.ProductionKey {
		return Result{}, Terminal(errors.New("refusing to reset production's database"))
	}
	p := r.progress(src, true)
	var out *outcome
	defer func() { err = p.finish(ctx, out, err) }()
	rs, ok := r.o.Database.(database.Resetter)
	if !ok {
		out = &outcome{reason: ReasonResetFailed, msg: "reset-db: this database kind cannot be reset"}
		return Result{}, nil
	}
	target := database.Target{Key: key, Tier: o.Tier.Made}
	r.log.Info("resetting the database", "env", key)
	if err := r.o.Store.AddEvent(ctx, key, env.Event{Reason: ReasonResetting, Message: "resetting the database; the old one serves until the new one is ready", SHA: src.SHA}); err != nil {
		return Result{}, err
	}
	items := rs.ResetItems(target)
	for _, it := range items {
		if err := r.o.Store.PutItem(ctx, key, it); err != nil {
			return Result{}, err
		}
	}
	url := r.o.URL(key)
	if o.Record != nil && o.Record.URL != "" {
		url = o.Record.URL
	}
	rel := &env.Release{Source: src, URL: url, Vars: env.Vars(src, url)}
	start := r.o.Now()
	var rerr error
	// The commit's own spec (its migrate, its processes), as its rollout
	// had.
	if rel.Spec, rerr = r.specOf(ctx, src); rerr == nil {
		rerr = r.o.Runtime.Prepare(ctx, rel)
	}
	if rerr == nil {
		var conn database.Conn
		conn, rerr = rs.Reset(ctx, target, func(ctx context.Context, next database.Conn) error {
			nrel := *rel
			nrel.Vars = maps.Clone(rel.Vars)
			maps.Copy(nrel.Vars, next.Vars)
			if err := r.o.Runtime.Migrate(ctx, &nrel); err != nil {
				return err
			}
			return r.seed(ctx, &nrel, next)
		})
		maps.Copy(rel.Vars, conn.Vars)
	}
	// What the reset made besides the swapped-in database goes, whatever
	// happened; what cannot go yet stays recorded for teardown.
	derr := r.o.Database.Drop(ctx, items)
	left := database.Left(items, derr)
	for _, it := range items {
		if !inventory.Has(left, inventory.IDOf(it)) {
			if err := r.o.Store.DeleteItem(ctx, key, it); err != nil {
				return Result{}, err
			}
		}
	}
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	if rerr != nil {
		msg := "reset-db failed; the old database is kept: " + rerr.Error()
		var se *env.StepError
		tail := ""
		if errors.As(rerr, &se) {
			msg = fmt.Sprintf("reset-db failed at %s; the old database is kept: %v", se.Step, se.Err)
			tail = se.Tail
			if tail != "" {
				msg += "\n" + tail
			}
		}
		r.log.Warn("reset failed", "env", key, "err", rerr)
		out = &outcome{reason: ReasonResetFailed, msg: msg, tail: tail}
		return Result{}, nil
	}
	if derr != nil {
		r.log.Warn("removing what the reset left", "env", key, "err", derr)
	}
	took := r.o.Now().Sub(start).Round(time.Millisecond)
	rec := o.Record
	switch {
	case rec != nil && rec.Status == env.StatusFailed:
		// A fresh database may be what the SHA needed: deploy it again.
		empty := ""
		failed := env.StatusFailed
		out = &outcome{status: &failed, reason: ReasonReset, msg: fmt.Sprintf("database reset in %s; deploying %s again", took, env.ShortSHA(src.SHA)), u: store.Update{FailedSHA: &empty}}
		return Result{RequeueAfter: time.Millisecond}, nil
	case rec != nil && rec.Status == env.StatusReady:
		if rp, ok := r.o.Database.(restarter); ok && rp.RestartAfterReset() {
			if err := r.o.Runtime.Deploy(ctx, rel); err != nil {
				out = &outcome{reason: ReasonResetFailed, msg: fmt.Sprintf("database reset in %s, but restarting the app failed: %v", took, err)}
				return Result{}, err
			}
		}
	}
	out = &outcome{reason: ReasonReset, msg: fmt.Sprintf("database reset in %s: a fresh database, migrations ran again", took)}
	return Result{}, nil
}

// seed runs database.postgres.seed, read from the repository at the
// release's commit, in a fresh database: after a new preview's
// migrations, and in a reset. Production is never seeded.
func (r *Reconciler) seed(ctx context.Context, rel *env.Release, conn database.Conn) error {
	if r.o.SeedPath == "" || rel.Source.Production() {
		return nil
	}
	sd, ok := r.o.Database.(database.Seeder)
	if !ok {
		return nil
	}
	fr, ok := r.o.Runtime.(runtime.FileReader)
	if !ok {
		return &env.StepError{Step: "seed", Err: fmt.Errorf("this runtime cannot read %s from the repository", r.o.SeedPath)}
	}
	b, err := fr.ReadFile(ctx, rel.Source, r.o.SeedPath)
	if err != nil {
		return &env.StepError{Step: "seed", Err: err}
	}
	if err := sd.Seed(ctx, conn, string(b)); err != nil {
		return &env.StepError{Step: "seed", Err: err}
	}
	return nil
}
