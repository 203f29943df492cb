package database

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
)

// Target says which environment a provider works for.
type Target struct {
	Key        string
	Production bool
	// Tier is the database tier (env.DBTierSchema...) a Tiered provider
	// uses; empty is its default. Other providers have one tier and
	// ignore it.
	Tier string
}

// Conn is what an environment's processes need to reach its database.
type Conn struct {
	// Vars are given to the app and to migrate: DATABASE_URL and, per
	// kind, DATABASE_PATH or DATABASE_SCHEMA.
	Vars map[string]string
	// Name names the database for people (file, schema or database name).
	Name string
}

// Provider creates and drops environments' databases.
type Provider interface {
	// Items returns, before anything exists, the inventory items Ensure
	// will create for t, so the caller can record them first. It returns
	// nothing for production, which previewd does not own.
	Items(t Target) []env.Item
	// Ensure creates what t needs if it is missing and returns how to
	// connect. It keeps existing data.
	Ensure(ctx context.Context, t Target) (Conn, error)
	// Drop removes the items; removing what is already gone is not an
	// error, so it can be called again to finish. It refuses items that
	// belong to production (ErrProduction) and objects previewd did not
	// make (ErrForeign), and ignores items of kinds it does not make.
	// When some items are not removed, the error is a *LeftError naming
	// them: the caller keeps those recorded, to be retried, and forgets
	// the rest, which are gone (Left does both for it).
	Drop(ctx context.Context, items []env.Item) error
}

// Collector is implemented by providers that can find databases they made
// that no live environment owns any more.
type Collector interface {
	// Collect drops every object the provider made whose key is not in
	// live, and returns their names.
	Collect(ctx context.Context, live map[string]bool) ([]string, error)
}

// Resetter is implemented by providers that can give an environment a
// fresh database while the old one keeps serving.
type Resetter interface {
	// Reset builds a fresh database for t beside the current one (from
	// the template or seed, or empty, as Ensure would), calls prepare with
	// how to reach it (prepare runs migrate and the seed there), and only
	// when prepare succeeds swaps it in for the current one, which is then
	// dropped. When prepare fails, the fresh one is dropped and the
	// current one is left as it was. It returns the Conn the app uses
	// after the swap (the same variables as before). It refuses
	// production (ErrProduction).
	//
	// The fresh database's objects are not the environment's Items until
	// the swap: the caller records ResetItems first (see each provider)
	// and passes them to Drop after Reset returns, whatever it returned,
	// so what a crash left is removed.
	Reset(ctx context.Context, t Target, prepare func(ctx context.Context, next Conn) error) (Conn, error)
	// ResetItems returns, before anything exists, the inventory items of
	// the objects Reset makes for t besides Items(t): all of them are gone
	// when Reset returns, unless it crashed or failed to clean up.
	ResetItems(t Target) []env.Item
}

// ErrProduction is returned by Drop when asked to drop production's data.
var ErrProduction = errors.New("refusing to drop the production database")

// ErrForeign is returned when an object with a name previewd makes exists
// but was not made by previewd for that environment. previewd neither takes
// it over nor drops it.
var ErrForeign = errors.New("exists but was not made by previewd")

// LeftError is Drop's error when items were not removed. Items are those
// that may still exist (refused ones included); every other item given to
// Drop is gone. Err holds the reasons, so errors.Is finds ErrProduction and
// ErrForeign through it.
type LeftError struct {
	Items []env.Item
	Err   error
}

func (e *LeftError) Error() string {
	ids := make([]string, len(e.Items))
	for i, it := range e.Items {
		ids[i] = inventory.IDOf(it).String()
	}
	return fmt.Sprintf("left %s: %v", strings.Join(ids, ", "), e.Err)
}

func (e *LeftError) Unwrap() error { return e.Err }

// Left returns the items of items that are still there after Drop(ctx,
// items) returned err: none when err is nil, those a *LeftError names, and
// all of them for any other error (nothing is known to be gone).
func Left(items []env.Item, err error) []env.Item {
	if err == nil {
		return nil
	}
	var le *LeftError
	if !errors.As(err, &le) {
		return items
	}
	var out []env.Item
	for _, it := range items {
		if inventory.Has(le.Items, inventory.IDOf(it)) {
			out = append(out, it)
		}
	}
	return out
}

// None is the provider for database.kind none: environments get no
// database.
type None struct{}

// Items implements Provider.
func (None) Items(Target) []env.Item { return nil }

// Ensure implements Provider.
func (None) Ensure(context.Context, Target) (Conn, error) {
	return Conn{Vars: map[string]string{}}, nil
}

// Drop implements Provider.
func (None) Drop(context.Context, []env.Item) error { return nil }

var _ Provider = None{}

// Sizer is implemented by providers that can say how much space an
// environment's database takes (the dashboard shows it).
type Sizer interface {
	Size(ctx context.Context, t Target) (int64, error)
}

// RehearseOptions bound a migration rehearsal.
type RehearseOptions struct {
	// LockTimeout and StatementTimeout are set on the rehearsal database,
	// so every session of the migrations gets them; 0 leaves the server's.
	LockTimeout, StatementTimeout time.Duration
	// Sample is how often locks and running statements are sampled.
	// Default 5ms.
	Sample time.Duration
}

// Rehearser is implemented by providers that can rehearse an
// environment's migrations on a copy of the reference data (the template,
// or a schema-only copy of production) before they run against the
// environment's own database.
type Rehearser interface {
	// RehearsalItems returns the inventory items Rehearse makes for t, so
	// the caller can record them first; Rehearse drops them before it
	// returns, and Drop removes what a crash left.
	RehearsalItems(t Target) []env.Item
	// Rehearse makes the rehearsal database, calls migrate with how to
	// reach it, observes what the migrations did, drops it and returns the
	// report. A failed migration is in the report (Error), not Rehearse's
	// error, which says that the rehearsal itself could not be made. It
	// refuses production.
	Rehearse(ctx context.Context, t Target, o RehearseOptions, migrate func(context.Context, Conn) error) (env.Rehearsal, error)
}

// Seeder is implemented by providers that can run a seed (an SQL file of
// the repository, database.postgres.seed) in an environment's fresh
// database, as its role.
type Seeder interface {
	Seed(ctx context.Context, conn Conn, sql string) error
}
