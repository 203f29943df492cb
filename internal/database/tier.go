package database

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/previewd/previewd/internal/env"
)

// Tier is one database tier of a Tiered provider.
type Tier struct {
	// Name is the tier's name (env.DBTierSchema, env.DBTierClone,
	// env.DBTierEmpty).
	Name string
	// Provider makes and drops the tier's databases.
	Provider Provider
	// Kinds are the kinds of inventory item Provider makes; Drop routes
	// an item to a tier that makes its kind.
	Kinds []env.ItemKind
}

// Tiered is a provider with several tiers, one Provider each: a Target's
// Tier chooses which one makes its database (empty: the default, the
// first). Drop routes by the items, since a teardown does not know the
// tier; Collect unions the tiers' collectors.
type Tiered struct {
	tiers []Tier
	// unavailable says, by tier name, why a known tier is not offered.
	unavailable map[string]string
}

var (
	_ Provider  = (*Tiered)(nil)
	_ Collector = (*Tiered)(nil)
	_ Sizer     = (*Tiered)(nil)
)

// NewTiered returns a provider over tiers, the first being the default.
// unavailable says, by tier name, why a known tier is not offered (for
// Resolve's error), e.g. "no database.postgres.template".
func NewTiered(tiers []Tier, unavailable map[string]string) (*Tiered, error) {
	if len(tiers) == 0 {
		return nil, errors.New("database: a tiered provider needs at least one tier")
	}
	seen := map[string]bool{}
	for _, t := range tiers {
		switch {
		case !env.KnownDBTier(t.Name):
			return nil, fmt.Errorf("database: tier %q: want %s, %s or %s", t.Name, env.DBTierSchema, env.DBTierClone, env.DBTierEmpty)
		case seen[t.Name]:
			return nil, fmt.Errorf("database: tier %q given twice", t.Name)
		case t.Provider == nil || len(t.Kinds) == 0:
			return nil, fmt.Errorf("database: tier %q has no provider or no item kinds", t.Name)
		}
		seen[t.Name] = true
	}
	return &Tiered{tiers: slices.Clone(tiers), unavailable: unavailable}, nil
}

// Close closes the tiers' providers that hold connections.
func (d *Tiered) Close() {
	for _, t := range d.tiers {
		if c, ok := t.Provider.(interface{ Close() }); ok {
			c.Close()
		}
	}
}

// Default returns the default tier's name.
func (d *Tiered) Default() string { return d.tiers[0].Name }

// Names returns the tiers offered, the default first.
func (d *Tiered) Names() []string {
	out := make([]string, len(d.tiers))
	for i, t := range d.tiers {
		out[i] = t.Name
	}
	return out
}

// Provider returns the named tier's provider ("" is the default), or nil
// when there is no such tier.
func (d *Tiered) Provider(tier string) Provider {
	if t := d.tier(tier); t != nil {
		return t.Provider
	}
	return nil
}

func (d *Tiered) tier(name string) *Tier {
	if name == "" {
		return &d.tiers[0]
	}
	for i := range d.tiers {
		if d.tiers[i].Name == name {
			return &d.tiers[i]
		}
	}
	return nil
}

// Resolve returns the tier a source asking for asked (env.Source.DBTier)
// gets: the default for empty, asked when it is offered, and otherwise an
// error for the pull request saying why (an unknown tier, several asked
// at once, a tier not offered here).
func (d *Tiered) Resolve(asked string) (string, error) {
	switch {
	case asked == "":
		return d.Default(), nil
	case d.tier(asked) != nil:
		return asked, nil
	case strings.Contains(asked, ","):
		return "", fmt.Errorf("the labels ask for several database tiers (%s)", asked)
	case !env.KnownDBTier(asked):
		return "", fmt.Errorf("unknown database tier %q: want %s, %s or %s", asked, env.DBTierSchema, env.DBTierClone, env.DBTierEmpty)
	}
	why := d.unavailable[asked]
	if why == "" {
		why = "not configured"
	}
	return "", fmt.Errorf("database tier %s is not offered: %s", asked, why)
}

// Items implements Provider: t.Tier's items; none for a tier it does not
// have (Ensure says why).
func (d *Tiered) Items(t Target) []env.Item {
	tr := d.tier(t.Tier)
	if tr == nil {
		return nil
	}
	return tr.Provider.Items(t)
}

// Ensure implements Provider with t.Tier's provider.
func (d *Tiered) Ensure(ctx context.Context, t Target) (Conn, error) {
	tr := d.tier(t.Tier)
	if tr == nil {
		return Conn{}, fmt.Errorf("database tier %q is not offered", t.Tier)
	}
	return tr.Provider.Ensure(ctx, t)
}

// Size implements Sizer with t.Tier's provider, when it can tell.
func (d *Tiered) Size(ctx context.Context, t Target) (int64, error) {
	tr := d.tier(t.Tier)
	if tr == nil {
		return 0, fmt.Errorf("database tier %q is not offered", t.Tier)
	}
	sz, ok := tr.Provider.(Sizer)
	if !ok {
		return 0, fmt.Errorf("database tier %s cannot tell its size", tr.Name)
	}
	return sz.Size(ctx, t)
}

// Drop implements Provider. Each item goes to the first tier that makes
// its kind, so tiers that make the same kind must be able to drop each
// other's (the postgres tiers share one server); an item of a kind several
// tiers make (a role) goes with the other items of its name, preferring
// the tier that gets its database (which it owns, so that tier drops the
// database first). Items no tier makes are ignored. What any tier leaves
// is named in one *LeftError.
func (d *Tiered) Drop(ctx context.Context, items []env.Item) error {
	batches := make([][]env.Item, len(d.tiers))
	at := map[string][]int{} // name -> tiers given an item of that name
	var shared []env.Item
	for _, it := range items {
		makers := d.makers(it.Kind)
		switch {
		case len(makers) == 0:
			continue
		case len(makers) > 1:
			shared = append(shared, it)
			continue
		}
		i := makers[0]
		batches[i] = append(batches[i], it)
		if it.Kind == env.ItemDatabase {
			at[it.Name] = append([]int{i}, at[it.Name]...)
		} else {
			at[it.Name] = append(at[it.Name], i)
		}
	}
	for _, it := range shared {
		i := d.makers(it.Kind)[0]
		for _, j := range at[it.Name] {
			if d.makes(j, it.Kind) {
				i = j
				break
			}
		}
		batches[i] = append(batches[i], it)
	}
	var left []env.Item
	var errs []error
	for i, b := range batches {
		if len(b) == 0 {
			continue
		}
		if err := d.tiers[i].Provider.Drop(ctx, b); err != nil {
			errs = append(errs, err)
			left = append(left, Left(b, err)...)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &LeftError{Items: left, Err: errors.Join(errs...)}
}

// makers returns the indexes of the tiers that make kind.
func (d *Tiered) makers(kind env.ItemKind) []int {
	var out []int
	for i := range d.tiers {
		if d.makes(i, kind) {
			out = append(out, i)
		}
	}
	return out
}

func (d *Tiered) makes(i int, kind env.ItemKind) bool { return slices.Contains(d.tiers[i].Kinds, kind) }

// Collect implements Collector: every tier's collector, each given the
// same live keys, so none takes what a live environment of another tier
// owns (live keys are per environment, whatever its tier). What several
// report is named once.
func (d *Tiered) Collect(ctx context.Context, live map[string]bool) ([]string, error) {
	var removed []string
	var errs []error
	for _, t := range d.tiers {
		c, ok := t.Provider.(Collector)
		if !ok {
			continue
		}
		r, err := c.Collect(ctx, live)
		if err != nil {
			errs = append(errs, fmt.Errorf("tier %s: %w", t.Name, err))
		}
		for _, name := range r {
			if !slices.Contains(removed, name) {
				removed = append(removed, name)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// RehearsalItems implements Rehearser with t.Tier's provider, when it
// rehearses.
func (d *Tiered) RehearsalItems(t Target) []env.Item {
	if tr := d.tier(t.Tier); tr != nil {
		if rh, ok := tr.Provider.(Rehearser); ok {
			return rh.RehearsalItems(t)
		}
	}
	return nil
}

// Rehearse implements Rehearser with t.Tier's provider, when it
// rehearses.
func (d *Tiered) Rehearse(ctx context.Context, t Target, o RehearseOptions, migrate func(context.Context, Conn) error) (env.Rehearsal, error) {
	tr := d.tier(t.Tier)
	if tr == nil {
		return env.Rehearsal{}, fmt.Errorf("database tier %q is not offered", t.Tier)
	}
	rh, ok := tr.Provider.(Rehearser)
	if !ok {
		return env.Rehearsal{}, fmt.Errorf("database tier %s does not rehearse migrations", tr.Name)
	}
	return rh.Rehearse(ctx, t, o, migrate)
}

var _ Rehearser = (*Tiered)(nil)

// ResetItems implements Resetter with t.Tier's provider, when it resets.
func (d *Tiered) ResetItems(t Target) []env.Item {
	if tr := d.tier(t.Tier); tr != nil {
		if rs, ok := tr.Provider.(Resetter); ok {
			return rs.ResetItems(t)
		}
	}
	return nil
}

// Reset implements Resetter with t.Tier's provider, when it resets.
func (d *Tiered) Reset(ctx context.Context, t Target, prepare func(ctx context.Context, next Conn) error) (Conn, error) {
	tr := d.tier(t.Tier)
	if tr == nil {
		return Conn{}, fmt.Errorf("database tier %q is not offered", t.Tier)
	}
	rs, ok := tr.Provider.(Resetter)
	if !ok {
		return Conn{}, fmt.Errorf("database tier %s cannot reset", tr.Name)
	}
	return rs.Reset(ctx, t, prepare)
}

var _ Resetter = (*Tiered)(nil)

// Seed implements Seeder with the first tier that seeds (a seed runs as the
// environment's role on the connection it is given, whatever the tier).
func (d *Tiered) Seed(ctx context.Context, conn Conn, sql string) error {
	for _, tr := range d.tiers {
		if s, ok := tr.Provider.(Seeder); ok {
			return s.Seed(ctx, conn, sql)
		}
	}
	return errors.New("no database tier runs seeds")
}

var _ Seeder = (*Tiered)(nil)
