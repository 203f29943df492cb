package postgres

import (
	"cmp"
	"context"
	"fmt"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// DefaultTier returns the tier o's isolation and template give an
// environment that asks for none: schema, clone (database with a
// template) or empty (database without one).
func DefaultTier(o Options) string {
	switch {
	case o.Isolation == IsolationDatabase && o.Template != "":
		return env.DBTierClone
	case o.Isolation == IsolationDatabase:
		return env.DBTierEmpty
	}
	return env.DBTierSchema
}

// NewTiered returns a database.Tiered over the tiers o's server offers,
// one Provider each, all with o's admin URL, secret and instance: schema
// (a schema in the admin database), clone (a database cloned from
// o.Template; only with a template) and empty (an empty database). The
// default, first, is DefaultTier(o), and must be offered. The database
// tiers are not offered with o.AdminPooled (their session lock needs a
// session), nor when their provider cannot be made: Resolve says why.
//
// Each provider has its own admin pool, which connects on first use, so a
// tier no environment uses holds no connection.
func NewTiered(ctx context.Context, o Options) (*database.Tiered, error) {
	def := DefaultTier(o)
	kinds := map[string][]env.ItemKind{
		env.DBTierSchema: {env.ItemRole, env.ItemSchema},
		env.DBTierClone:  {env.ItemRole, env.ItemDatabase},
		env.DBTierEmpty:  {env.ItemRole, env.ItemDatabase},
	}
	var tiers []database.Tier
	unavailable := map[string]string{}
	closeAll := func() {
		for _, t := range tiers {
			t.Provider.(*Provider).Close()
		}
	}
	order := []string{def}
	for _, name := range []string{env.DBTierSchema, env.DBTierClone, env.DBTierEmpty} {
		if name != def {
			order = append(order, name)
		}
	}
	for _, name := range order {
		to := o
		// Every tier rehearses on, and refreshes, the configured template.
		to.Reference = cmp.Or(o.Reference, o.Template)
		switch name {
		case env.DBTierSchema:
			to.Isolation, to.Template = IsolationSchema, ""
		case env.DBTierClone:
			to.Isolation = IsolationDatabase
		case env.DBTierEmpty:
			to.Isolation, to.Template = IsolationDatabase, ""
		}
		switch {
		case name == env.DBTierClone && o.Template == "":
			unavailable[name] = "no database.postgres.template to clone"
			continue
		case name != env.DBTierSchema && o.AdminPooled:
			unavailable[name] = "database.postgres.adminPooled: a database of its own needs a session lock a transaction pooler does not keep"
			continue
		}
		p, err := New(ctx, to)
		if err != nil {
			if name == def {
				closeAll()
				return nil, err
			}
			unavailable[name] = err.Error()
			continue
		}
		tiers = append(tiers, database.Tier{Name: name, Provider: p, Kinds: kinds[name]})
	}
	d, err := database.NewTiered(tiers, unavailable)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return d, nil
}
