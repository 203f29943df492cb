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
	"github.com/previewd/previewd/internal/store"
)

// Reasons recorded in the event history.
const (
	ReasonBuilding  = "Building"
	ReasonMigrating = "Migrating"
	ReasonStarting  = "Starting"
	ReasonReady     = "Ready"
	ReasonFailed    = "Failed"
	ReasonRestarted = "Restarted"
	ReasonHeld      = "Held"
	ReasonDeleting  = "Deleting"
	ReasonRemoved   = "Removed"
	ReasonRetrying  = "RemovalRetrying"
	ReasonWaiting   = "Waiting"
)

// progress saves a status change with an event and tells the notifiers.
type progress struct {
	r     *Reconciler
	src   env.Source
	start time.Time
}

func (p *progress) set(ctx context.Context, status env.Status, reason, msg string, u store.Update, tail string) error {
	u.Status, u.Message = &status, &msg
	if err := p.r.o.Store.Set(ctx, p.src.Key, u); err != nil {
		return err
	}
	if err := p.r.o.Store.AddEvent(ctx, p.src.Key, env.Event{Reason: reason, Message: msg, SHA: p.src.SHA}); err != nil {
		return err
	}
	p.notify(ctx, tail, nil, nil)
	return nil
}

func (p *progress) notify(ctx context.Context, tail string, removed, left []string) {
	if len(p.r.o.Notifiers) == 0 {
		return
	}
	e, err := p.r.o.Store.Get(ctx, p.src.Key)
	if err != nil {
		p.r.log.Error("reading environment to notify", "env", p.src.Key, "err", err)
		return
	}
	n := env.Notice{Env: e, Source: p.src, Took: p.r.o.Now().Sub(p.start), Tail: tail, Removed: removed, Left: left}
	for _, nt := range p.r.o.Notifiers {
		if err := nt.Notify(ctx, n); err != nil {
			// A notification failing must not stop the environment; the
			// next change notifies again.
			p.r.log.Warn("notifying", "env", p.src.Key, "err", err)
		}
	}
}

func (r *Reconciler) hold(ctx context.Context, src env.Source) error {
	if err := r.o.Store.Upsert(ctx, src); err != nil {
		return err
	}
	p := &progress{r: r, src: src, start: r.o.Now()}
	return p.set(ctx, env.StatusPending, ReasonHeld, src.Hold, store.Update{}, "")
}

// deploy rolls the environment out at src.SHA: build, database, migrate,
// start. A failure of the app's own steps is terminal for this SHA; any
// other error is returned to be retried with backoff.
func (r *Reconciler) deploy(ctx context.Context, src env.Source, st State, restart bool) error {
	key := src.Key
	if err := r.o.Store.Upsert(ctx, src); err != nil {
		return err
	}
	p := &progress{r: r, src: src, start: r.o.Now()}
	url := r.o.URL(key)
	short := env.ShortSHA(src.SHA)
	oldSHA := ""
	if st.Running {
		oldSHA = st.RunningSHA
	}
	restarts := 0
	if restart {
		// A process that ran for a good while since the last restart
		// crashed anew, not in a loop: its count starts again.
		restarts = RecentRestarts(*st.Record, st.Now) + 1
		r.log.Info("restarting", "env", key, "sha", short, "restarts", restarts)
		if err := r.o.Store.AddEvent(ctx, key, env.Event{Reason: ReasonRestarted, Message: fmt.Sprintf("process exited; restart %d of %d", restarts, r.o.MaxRestarts), SHA: src.SHA}); err != nil {
			return err
		}
	} else {
		r.log.Info("deploying", "env", key, "sha", short)
		sha := src.SHA
		if err := p.set(ctx, env.StatusBuilding, ReasonBuilding, "building "+short, store.Update{SHA: &sha, URL: &url}, ""); err != nil {
			return err
		}
	}
	rel := &env.Release{Source: src, URL: url, Vars: env.Vars(src, url)}
	if err := r.o.Runtime.Prepare(ctx, rel); err != nil {
		var we *env.WaitError
		if errors.As(err, &we) {
			return r.waiting(ctx, p, we)
		}
		return r.stepFailed(ctx, p, err, oldSHA)
	}

	target := database.Target{Key: key, Production: src.Production()}
	for _, it := range r.o.Database.Items(target) {
		if err := r.o.Store.PutItem(ctx, key, it); err != nil {
			return err
		}
	}
	conn, err := r.o.Database.Ensure(ctx, target)
	if err != nil {
		msg := "database: " + err.Error()
		status := env.StatusFailed
		p.set(ctx, status, ReasonFailed, msg, store.Update{}, "")
		return fmt.Errorf("ensuring database: %w", err)
	}
	maps.Copy(rel.Vars, conn.Vars)
	dbName := conn.Name
	if err := r.o.Store.Set(ctx, key, store.Update{Database: &dbName}); err != nil {
		return err
	}

	if !restart {
		if err := p.set(ctx, env.StatusMigrating, ReasonMigrating, "migrating "+short, store.Update{}, ""); err != nil {
			return err
		}
		if err := r.o.Runtime.Migrate(ctx, rel); err != nil {
			return r.stepFailed(ctx, p, err, oldSHA)
		}
		if err := p.set(ctx, env.StatusStarting, ReasonStarting, "starting "+short, store.Update{}, ""); err != nil {
			return err
		}
	}
	if err := r.o.Runtime.Deploy(ctx, rel); err != nil {
		if restart {
			// A failed restart is one more crash, not a verdict on the
			// SHA: count it and try again after a backoff, until the
			// restarts are used up.
			if restarts >= r.o.MaxRestarts {
				rec := *st.Record
				rec.Restarts = restarts
				return r.giveUp(ctx, src, rec)
			}
			msg := fmt.Sprintf("restart %d of %d failed: %v", restarts, r.o.MaxRestarts, err)
			if serr := r.o.Store.Set(ctx, key, store.Update{Restarts: &restarts, Message: &msg}); serr != nil {
				return serr
			}
			return errors.New(msg)
		}
		return r.stepFailed(ctx, p, err, oldSHA)
	}
	took := r.o.Now().Sub(p.start).Round(time.Millisecond)
	empty := ""
	msg := fmt.Sprintf("%s ready in %s", short, took)
	if restart {
		msg = fmt.Sprintf("%s restarted after the process exited (%d of %d)", short, restarts, r.o.MaxRestarts)
	}
	// The runtime may have found the real URL (e.g. an Ingress host).
	u := store.Update{Ready: !restart, FailedSHA: &empty, Restarts: &restarts, URL: &rel.URL, Deployed: &src}
	r.log.Info("ready", "env", key, "sha", short, "took", took)
	return p.set(ctx, env.StatusReady, ReasonReady, msg, u, "")
}

// waiting records that the environment cannot go on yet (e.g. its image is
// not in the registry) and looks again after a delay, with jitter.
func (r *Reconciler) waiting(ctx context.Context, p *progress, we *env.WaitError) error {
	if err := p.set(ctx, env.StatusPending, ReasonWaiting, we.Reason, store.Update{}, ""); err != nil {
		return err
	}
	after := we.After
	if after <= 0 {
		after = 10 * time.Second
	}
	r.queue.AddAfter(p.src.Key, after+rand.N(after/5+1))
	return nil
}

// stepFailed records a failed step. The app's own failures (env.StepError)
// are terminal for the SHA; others are returned for a retry.
func (r *Reconciler) stepFailed(ctx context.Context, p *progress, err error, oldSHA string) error {
	var se *env.StepError
	if !errors.As(err, &se) {
		msg := err.Error()
		p.set(ctx, env.StatusFailed, ReasonFailed, msg, store.Update{}, "")
		return err
	}
	msg := fmt.Sprintf("%s of %s failed: %v", se.Step, env.ShortSHA(p.src.SHA), se.Err)
	if oldSHA != "" && oldSHA != p.src.SHA {
		msg += fmt.Sprintf("; still serving %s", env.ShortSHA(oldSHA))
	}
	if se.Tail != "" {
		msg += "\n" + se.Tail
	}
	r.log.Warn("step failed", "env", p.src.Key, "sha", env.ShortSHA(p.src.SHA), "step", se.Step, "err", se.Err)
	sha := p.src.SHA
	return p.set(ctx, env.StatusFailed, ReasonFailed, msg, store.Update{FailedSHA: &sha}, se.Tail)
}

func (r *Reconciler) giveUp(ctx context.Context, src env.Source, rec store.Record) error {
	p := &progress{r: r, src: src, start: r.o.Now()}
	sha := src.SHA
	msg := fmt.Sprintf("%s keeps exiting: gave up after %d restarts", env.ShortSHA(sha), rec.Restarts)
	if t := r.logTail(src.Key); t != "" {
		msg += "\n" + t
	}
	return p.set(ctx, env.StatusFailed, ReasonFailed, msg, store.Update{FailedSHA: &sha}, r.logTail(src.Key))
}

func (r *Reconciler) logTail(key string) string {
	if t, ok := r.o.Runtime.(interface {
		LogTail(key string, n int) string
	}); ok {
		return t.LogTail(key, 20)
	}
	return ""
}

// teardown removes everything in the environment's inventory: the
// runtime's part first, then the database. What fails to go stays in the
// inventory and is retried.
func (r *Reconciler) teardown(ctx context.Context, key string, st State) error {
	src := env.Source{Key: key}
	if st.Record != nil {
		src = env.Source{Key: key, Kind: st.Record.Kind, Number: st.Record.Number, Branch: st.Record.Branch, SHA: st.Record.SHA}
	}
	if src.Production() || key == env.ProductionKey {
		return errors.New("refusing to tear down production")
	}
	p := &progress{r: r, src: src, start: r.o.Now()}
	r.log.Info("tearing down", "env", key)
	if st.Record != nil && st.Record.DeletedAt == nil && st.Record.Status != env.StatusDeleting {
		if err := p.set(ctx, env.StatusDeleting, ReasonDeleting, "removing", store.Update{}, ""); err != nil {
			return err
		}
	}
	var errs []error
	if err := r.o.Runtime.Delete(ctx, key, st.Items); err != nil {
		errs = append(errs, fmt.Errorf("runtime: %w", err))
	}
	// The app may still run (e.g. its namespace still terminating): the
	// database goes only once the runtime's part is gone.
	if len(errs) == 0 {
		if err := r.o.Database.Drop(ctx, dbItems(st.Items)); err != nil {
			errs = append(errs, fmt.Errorf("database: %w", err))
		} else {
			for _, it := range dbItems(st.Items) {
				if err := r.o.Store.DeleteItem(ctx, key, it); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	left, err := r.o.Store.Items(ctx, key)
	if err != nil {
		return err
	}
	removed, remaining := describe(st.Items, left)
	if len(errs) > 0 || len(left) > 0 {
		err := errors.Join(errs...)
		if err == nil {
			err = fmt.Errorf("%d items left", len(left))
		}
		msg := "removal failed and is being retried: " + err.Error()
		if st.Record != nil {
			r.o.Store.Set(ctx, key, store.Update{Message: &msg})
			r.o.Store.AddEvent(ctx, key, env.Event{Reason: ReasonRetrying, Message: msg, SHA: src.SHA})
			p.notify(ctx, "", removed, remaining)
		}
		return err
	}
	took := r.o.Now().Sub(p.start).Round(time.Millisecond)
	msg := fmt.Sprintf("removed in %s", took)
	if len(removed) > 0 {
		msg = fmt.Sprintf("removed %s in %s", strings.Join(removed, ", "), took)
	}
	if st.Record != nil {
		status := env.StatusDeleting
		u := store.Update{Status: &status, Message: &msg}
		if st.Record.DeletedAt == nil {
			u.Deleted = true
		}
		if err := r.o.Store.Set(ctx, key, u); err != nil {
			return err
		}
		if err := r.o.Store.AddEvent(ctx, key, env.Event{Reason: ReasonRemoved, Message: msg, SHA: src.SHA}); err != nil {
			return err
		}
		p.notify(ctx, "", removed, nil)
	}
	r.log.Info("removed", "env", key, "took", took)
	return nil
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
	type id struct {
		kind env.ItemKind
		name string
	}
	still := map[id]bool{}
	for _, it := range after {
		still[id{it.Kind, it.Name}] = true
	}
	seen := map[string]bool{}
	for _, it := range before {
		name := label(it)
		if seen[name] {
			continue
		}
		seen[name] = true
		if still[id{it.Kind, it.Name}] {
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
	return string(it.Kind) + " " + it.Name
}
