package e2e

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// pgxConnect connects without named prepared statements, as an app behind
// PgBouncer in transaction mode must.
func pgxConnect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	return pgx.ConnectConfig(ctx, cfg)
}
