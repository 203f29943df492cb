package database

import (
	"context"
	"errors"

	"github.com/previewd/previewd/internal/env"
)

// Target says which environment a provider works for.
type Target struct {
	Key        string
	Production bool
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
	// error. It refuses items that belong to production.
	Drop(ctx context.Context, items []env.Item) error
}

// Collector is implemented by providers that can find databases they made
// that no live environment owns any more.
type Collector interface {
	// Collect drops every object the provider made whose key is not in
	// live, and returns their names.
	Collect(ctx context.Context, live map[string]bool) ([]string, error)
}

// ErrProduction is returned by Drop when asked to drop production's data.
var ErrProduction = errors.New("refusing to drop the production database")

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
