package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/store"
)

// ReasonDBTierChanged (Deploy): the pull request asks for another
// database tier (a preview:db=<tier> label) than its database was made
// with; it is re-provisioned.
const ReasonDBTierChanged = "DBTierChanged"

// Tiers is what Decide knows of a key's database tier. Both are empty
// when the database provider has one tier, and for production, which
// never changes tier.
type Tiers struct {
	// Want is the tier the desired source gets: its label's, the default
	// without one, and Made when the provider cannot give what the label
	// asks (a typo must not re-create the data).
	Want string
	// Made is the tier the database was made with (store.Record.DBTier),
	// or the default when none is recorded (made before tiers, or not
	// made yet).
	Made string
}

// tiered is a database provider with several tiers (database.Tiered).
type tiered interface {
	Default() string
	Resolve(asked string) (string, error)
}

// tiersOf returns o's Tiers, for gather, from the provider's tiers and
// the desired source and record already in o.
func (r *Reconciler) tiersOf(o Observed) Tiers {
	td, ok := r.o.Database.(tiered)
	if !ok || o.production() {
		return Tiers{}
	}
	t := Tiers{Made: td.Default()}
	if o.Record != nil && o.Record.DBTier != "" {
		t.Made = o.Record.DBTier
	}
	t.Want = t.Made
	if o.Desired != nil {
		asked, _ := askedTier(*o.Desired, o.Record)
		if want, err := td.Resolve(asked); err == nil {
			t.Want = want
		}
	}
	return t
}

// askedTier returns the tier src's change asks for and how, for the pull
// request: a preview:db=<tier> label, or else the tier asked for by
// command (/preview db <tier>) and recorded on rec. Empty asks for the
// default.
func askedTier(src env.Source, rec *store.Record) (tier, how string) {
	switch {
	case src.DBTier != "":
		return src.DBTier, "label preview:db=" + src.DBTier
	case rec != nil && rec.DBTierAsked != "":
		return rec.DBTierAsked, "/preview db " + rec.DBTierAsked
	}
	return "", ""
}

// tierChange is Decide's plan for a live preview, ready or failed at its
// desired SHA, whose database tier is not the one asked for: deploy it
// again, which re-provisions the database (see provisionTier). A preview
// in another state gets the new tier at its next deploy (a sleeping one
// wakes at its old tier, and is then re-deployed). Production never
// changes tier.
func tierChange(o Observed) (Plan, bool) {
	t := o.Tier
	if t.Want == t.Made || !o.live() || o.production() || o.Desired == nil {
		return Plan{}, false
	}
	switch o.Record.Status {
	case env.StatusReady, env.StatusFailed:
	default:
		return Plan{}, false
	}
	return Plan{Action: Deploy, Source: *o.Desired, Reason: ReasonDBTierChanged,
		Message: fmt.Sprintf("database tier changed: %s → %s", t.Made, t.Want)}, true
}

// provisionTier chooses target's tier for a deploy, before the database
// is ensured, and says on rel what the pull request should know. A
// restart or wake keeps the tier the database was made with (it does not
// migrate). A deploy at another tier first drops the old tier's database
// items (through the provider, then from the inventory; what is left
// stays recorded and the deploy fails, to be retried), and records the
// new tier, so that Ensure then makes the new database and migrate fills
// it. Production never changes tier, and nothing of it is dropped.
func (r *Reconciler) provisionTier(ctx context.Context, o Observed, plan Plan, target *database.Target, rel *env.Release) error {
	src := plan.Source
	if target.Production || src.Production() || src.Key == env.ProductionKey {
		target.Tier = ""
		return nil
	}
	asked, how := askedTier(src, o.Record)
	td, ok := r.o.Database.(tiered)
	if !ok {
		if asked != "" {
			rel.Warnings = append(rel.Warnings, fmt.Sprintf("%s ignored: this database has one tier", how))
		}
		return nil
	}
	made := o.Tier.Made
	if made == "" {
		made = td.Default()
	}
	want, err := td.Resolve(asked)
	if err != nil {
		want = made
		rel.Warnings = append(rel.Warnings, fmt.Sprintf("%s ignored: %v; the database stays at tier %s", how, err, made))
	}
	if plan.Action == Restart || plan.Action == Wake {
		target.Tier = made
		return nil
	}
	target.Tier = want
	if want != made {
		if old := dbItems(o.Items); len(old) > 0 {
			r.log.Info("changing database tier", "env", src.Key, "from", made, "to", want)
			if err := r.dropTier(ctx, src.Key, old); err != nil {
				return fmt.Errorf("dropping the %s database to change tier: %w", made, err)
			}
			rel.Warnings = append(rel.Warnings, fmt.Sprintf("database tier changed from %s to %s; data re-created", made, want))
		}
	}
	if o.Record == nil || o.Record.DBTier != want {
		if err := r.o.Store.Set(ctx, src.Key, store.Update{DBTier: &want}); err != nil {
			return err
		}
	}
	return nil
}

// dropTier drops items, a tier's database, and forgets in the inventory
// those that are gone.
func (r *Reconciler) dropTier(ctx context.Context, key string, items []env.Item) error {
	err := r.o.Database.Drop(ctx, items)
	left := database.Left(items, err)
	for _, it := range items {
		if inventory.Has(left, inventory.IDOf(it)) {
			continue
		}
		if derr := r.o.Store.DeleteItem(ctx, key, it); derr != nil && err == nil {
			err = derr
		}
	}
	return err
}

// ErrOneTier refuses a tier asked for by command where the database
// provider has one tier (SQLite, or PostgreSQL without database.postgres
// tiers to choose from).
var ErrOneTier error = &env.TierError{Why: "this database has one tier: there is none to choose"}

// AskTier records that key's pull request asks for database tier tier
// (/preview db <tier>), or clears the ask when tier is "" or "default",
// and reconciles key, which re-provisions its database when the tier it
// gets changes. A tier the provider does not offer is refused with the
// reason, an *env.TierError; so is production, which never changes tier.
// An environment that does not exist is store.ErrNotFound.
func (r *Reconciler) AskTier(ctx context.Context, key, tier string) (env.TierChoice, error) {
	td, ok := r.o.Database.(tiered)
	if !ok {
		return env.TierChoice{}, ErrOneTier
	}
	if tier == "default" {
		tier = ""
	}
	got, err := td.Resolve(tier)
	if err != nil {
		return env.TierChoice{}, &env.TierError{Why: err.Error()}
	}
	rec, err := r.lifecycleTarget(ctx, key)
	if errors.Is(err, ErrProduction) {
		return env.TierChoice{}, &env.TierError{Why: "production's database never changes tier"}
	}
	if err != nil {
		return env.TierChoice{}, err
	}
	if err := r.o.Store.Set(ctx, key, store.Update{DBTierAsked: &tier}); err != nil {
		return env.TierChoice{}, err
	}
	a := env.TierChoice{Tier: got, Made: rec.DBTier}
	if a.Made == "" {
		a.Made = td.Default()
	}
	r.mu.Lock()
	src, ok := r.desired[key]
	r.mu.Unlock()
	if ok && src.DBTier != "" {
		a.Label = src.DBTier
	}
	r.queue.Add(key)
	return a, nil
}
