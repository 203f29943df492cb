package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
)

// Collect implements database.Collector: it drops every role, schema (in
// the admin database) and database whose name has Prefix and whose marker
// names this provider's instance and a key that is not live, and returns
// what it dropped as "role x", "schema x", "database x". A database is
// also collected when it has no marker (a crash between CREATE DATABASE
// and COMMENT) but is owned by its marked role. A collected role takes
// every schema it owns (pg_namespace.nspowner) with it, as at teardown.
// Production's names, other instances' objects, objects marked by a
// previewd before instances (one without Options.Instance collects only
// those) and what `previewd db create` made are never collected.
func (p *Provider) Collect(ctx context.Context, live map[string]bool) ([]string, error) {
	rows, err := p.pool.Query(ctx, `
SELECT 'role', rolname, COALESCE(shobj_description(oid, 'pg_authid'), ''), '' FROM pg_roles WHERE starts_with(rolname, $1)
UNION ALL
SELECT 'schema', nspname, COALESCE(obj_description(oid, 'pg_namespace'), ''), '' FROM pg_namespace WHERE starts_with(nspname, $1)
UNION ALL
SELECT 'database', d.datname, COALESCE(shobj_description(d.oid, 'pg_database'), ''),
       CASE WHEN o.rolname = split_part(d.datname, '$', 1) THEN COALESCE(shobj_description(o.oid, 'pg_authid'), '') ELSE '' END
  FROM pg_database d JOIN pg_roles o ON o.oid = d.datdba WHERE starts_with(d.datname, $1)`, Prefix)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing preview objects: %w", err)
	}
	kinds := map[string]env.ItemKind{"role": env.ItemRole, "schema": env.ItemSchema, "database": env.ItemDatabase}
	dead := map[string][]env.Item{} // by name
	for rows.Next() {
		var kind, name, comment, ownerComment string
		if err := rows.Scan(&kind, &name, &comment, &ownerComment); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: listing preview objects: %w", err)
		}
		m, ok := parseMark(comment, name)
		if !ok && comment == "" && kind == "database" {
			m, ok = parseMark(ownerComment, name)
		}
		if !ok || !p.collectable(m) || live[m.key] || p.checkOwned(name) != nil {
			continue
		}
		dead[name] = append(dead[name], env.Item{Kind: kinds[kind], Name: name})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: listing preview objects: %w", err)
	}
	names := make([]string, 0, len(dead))
	for n := range dead {
		names = append(names, n)
	}
	sortAuxFirst(names)
	var removed []string
	var errs []error
	for _, name := range names {
		// One environment at a time; Drop orders database, schema, role.
		err := p.Drop(ctx, dead[name])
		if err != nil {
			errs = append(errs, err)
		}
		left := database.Left(dead[name], err)
		for _, it := range dead[name] {
			if !inventory.Has(left, inventory.IDOf(it)) {
				removed = append(removed, strings.TrimPrefix(string(it.Kind), "pg-")+" "+name)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// collectable reports whether Collect may drop an object marked m: this
// instance's exactly, and not the CLI's. An object of a previewd before
// instances has no instance, so no instanced provider collects it (it
// cannot tell whose it is); Ensure adopts it when its environment is
// deployed again, and teardown then drops it.
func (p *Provider) collectable(m mark) bool {
	return m.instance == p.instance && m.owner != OwnerCLI
}
