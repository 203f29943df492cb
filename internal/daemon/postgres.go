package daemon

import (
	"context"
	"errors"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/database"
)

// openPostgres is filled in when the postgres provider lands.
func openPostgres(ctx context.Context, cfg *config.Config) (database.Provider, error) {
	return nil, errors.New("database.kind postgres is not built in yet")
}
