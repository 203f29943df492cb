package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/database/postgres"
)

// openPostgres returns the postgres provider for database.postgres;
// owner is postgres.OwnerCLI for the db commands.
func openPostgres(ctx context.Context, cfg *config.Config, owner string) (database.Provider, error) {
	o, err := postgresOptions(cfg)
	if err != nil {
		return nil, err
	}
	o.Owner = owner
	return postgres.New(ctx, o)
}

// postgresOptions maps database.postgres to the provider's options. Role
// passwords derive from database.postgres.passwordSecret or, without one,
// from a random secret kept in the data dir, so a restart (or `previewd db
// create` with the same data dir) gives every environment the same working
// URL.
func postgresOptions(cfg *config.Config) (postgres.Options, error) {
	c := cfg.Database.Postgres
	s := c.PasswordSecret
	if s == "" {
		var err error
		if s, err = secret(cfg.DataDir); err != nil {
			return postgres.Options{}, fmt.Errorf("password secret: %w", err)
		}
	}
	return postgres.Options{
		AdminURL:        c.AdminURL,
		Isolation:       c.Isolation,
		Template:        c.Template,
		AppHost:         c.AppHost,
		ProductionURL:   c.ProductionURL,
		ConnectionLimit: c.ConnectionLimit,
		PasswordSecret:  []byte(s),
		Instance:        cfg.Instance,
	}, nil
}

// warnPublicConnect logs, once at start, postgres.Provider.PublicConnect's
// warning, or why it could not check.
func warnPublicConnect(ctx context.Context, db database.Provider, log *slog.Logger) {
	p, ok := db.(*postgres.Provider)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := p.PublicConnect(ctx)
	switch {
	case err != nil:
		log.Warn("checking production's database privileges", "err", err)
	case w != "":
		log.Warn("production's database", "warning", w)
	}
}
