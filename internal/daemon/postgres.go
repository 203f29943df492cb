package daemon

import (
	"context"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/database/postgres"
)

// openPostgres returns the postgres provider. Role passwords derive from
// database.postgres.passwordSecret or, without one, from a random secret
// kept in the data dir, so a restart (or `previewd db create` with the
// same data dir) gives every environment the same working URL.
func openPostgres(ctx context.Context, cfg *config.Config) (database.Provider, error) {
	s, err := secret(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return postgres.New(cfg.Database.Postgres, postgres.WithSecret([]byte(s)))
}
