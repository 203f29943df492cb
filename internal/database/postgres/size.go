package postgres

import (
	"context"
	"fmt"

	"github.com/previewd/previewd/internal/database"
)

var _ database.Sizer = (*Provider)(nil)

// Size implements database.Sizer: the size of the environment's database
// (isolation database, and production's), or the total size of its
// schema's tables, indexes and TOAST (isolation schema).
func (p *Provider) Size(ctx context.Context, t database.Target) (int64, error) {
	var n int64
	if isProduction(t) {
		db := p.prodDB
		if db == "" {
			db = p.adminDB
		}
		err := p.pool.QueryRow(ctx, `SELECT pg_database_size($1)`, db).Scan(&n)
		return n, sizeError(t, err)
	}
	name, err := p.previewName(t.Key)
	if err != nil {
		return 0, err
	}
	if p.isolation == IsolationDatabase {
		err := p.pool.QueryRow(ctx, `SELECT pg_database_size($1)`, name).Scan(&n)
		return n, sizeError(t, err)
	}
	err = p.pool.QueryRow(ctx, `
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
WHERE s.nspname = $1 AND c.relkind IN ('r', 'm', 'p')`, name).Scan(&n)
	return n, sizeError(t, err)
}

func sizeError(t database.Target, err error) error {
	if err != nil {
		return fmt.Errorf("the size of %s's database: %w", t.Key, err)
	}
	return nil
}
