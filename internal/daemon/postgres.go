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
// owner is postgres.OwnerCLI for the db commands. Serve's is tiered
// (postgres.NewTiered: schema, clone, empty; the default is what
// isolation and template say), so a pull request's preview:db=<tier>
// label can choose; the db commands make the default tier's.
func openPostgres(ctx context.Context, cfg *config.Config, owner string) (database.Provider, error) {
	o, err := postgresOptions(cfg)
	if err != nil {
		return nil, err
	}
	o.Owner = owner
	if owner == "" {
		return postgres.NewTiered(ctx, o)
	}
	return postgres.New(ctx, o)
}

// pgProvider returns db's postgres provider: db itself, or a tiered
// provider's default tier's (whose isolation is the configured one).
func pgProvider(db database.Provider) (*postgres.Provider, bool) {
	if t, ok := db.(*database.Tiered); ok {
		db = t.Provider("")
	}
	p, ok := db.(*postgres.Provider)
	return p, ok
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
		AdminURL:          c.AdminURL,
		AdminPooled:       c.AdminPooled,
		AllowCreateSchema: c.AllowCreateSchema,
		Masking:           c.Masking,
		Isolation:         c.Isolation,
		Template:          c.Template,
		AppHost:           c.AppHost,
		ProductionURL:     c.ProductionURL,
		ConnectionLimit:   c.ConnectionLimit,
		PasswordSecret:    []byte(s),
		Instance:          cfg.Instance,
	}, nil
}

// poolingChecker is a provider that can probe its app address for session
// state leaking between clients (postgres.Provider).
type poolingChecker interface {
	CheckPooling(ctx context.Context) (postgres.PoolingCheck, error)
}

// CheckPooling runs db's pooling check (`previewd db check`, and serve at
// start). ok is false for a provider without one (sqlite, none).
func CheckPooling(ctx context.Context, db database.Provider) (c postgres.PoolingCheck, ok bool, err error) {
	if p, isPG := pgProvider(db); isPG {
		db = p
	}
	pc, ok := db.(poolingChecker)
	if !ok {
		return postgres.PoolingCheck{}, false, nil
	}
	c, err = pc.CheckPooling(ctx)
	return c, true, err
}

// poolingCheckTimeout bounds serve's start check, so an unreachable
// appHost does not hold serve up.
const poolingCheckTimeout = 15 * time.Second

// LogPoolingCheck runs db's pooling check for serve's start and logs what
// it found: a warning for a leak, for an adminURL that looks pooled without
// adminPooled, or for a check that could not run; never an error, since
// serve works without it.
func LogPoolingCheck(ctx context.Context, db database.Provider, log *slog.Logger) {
	// In database isolation the probe's schema would live for a moment in
	// the admin database (often production's); there a leaked
	// search_path stays inside the environment's own database anyway, so
	// only `previewd db check`, run on purpose, looks.
	if p, ok := pgProvider(db); ok && p.Isolation() == postgres.IsolationDatabase {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, poolingCheckTimeout)
	defer cancel()
	c, ok, err := CheckPooling(ctx, db)
	switch {
	case !ok:
		return
	case err != nil:
		log.Warn("database pooling check failed", "err", err)
		return
	case c.Leak:
		log.Warn("database pooling check: session state leaks", "detail", c.Message)
	default:
		log.Info("database pooling check", "detail", c.Message)
	}
	if c.AdminWarning != "" {
		log.Warn("database pooling check: adminURL", "detail", c.AdminWarning)
	}
}

// warnPublicConnect logs, once at start, postgres.Provider.PublicConnect's
// warning, or why it could not check.
func warnPublicConnect(ctx context.Context, db database.Provider, log *slog.Logger) {
	p, ok := pgProvider(db)
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
