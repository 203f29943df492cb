// Package app is markdown-editor, the example application that previewd
// deploys in its demo and tests: a small markdown editor with a live preview
// and a JSON API, storing documents in SQLite or PostgreSQL.
//
// It follows the contract previewd gives the apps it deploys: configuration
// comes from environment variables (PORT, HOST, DATABASE_URL, DATABASE_PATH,
// DATABASE_SCHEMA, PREVIEW_*), the migrate command prepares the database, and
// serve answers GET /healthz once it is ready.
//
// The package is self-contained: it imports nothing else from previewd, and
// Source embeds its files, so previewd's demo can copy it into a repository
// of its own and build it there.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
)

const usage = `markdown-editor: a small markdown editor, the example app previewd deploys.

Usage:
  markdown-editor [serve]   serve the web app (the default command)
  markdown-editor migrate   apply the database migrations and exit
  markdown-editor help      show this help

serve refuses to start while migrations are pending: run migrate first.

Environment:
  PORT                port to listen on (default 8080)
  HOST                address to listen on (default: all interfaces;
                      previewd's local runtime sets 127.0.0.1)
  DATABASE_URL        postgres://... or postgresql://... for PostgreSQL,
                      or sqlite:/absolute/path for SQLite
  DATABASE_PATH       SQLite database file (used unless DATABASE_URL is a
                      PostgreSQL URL)
  DATABASE_SCHEMA     PostgreSQL schema that current_schema() must return;
                      both commands refuse to run otherwise
  APP_BANNER          banner shown on every page (default: the contents of
                      banner.txt in the working directory, if any)
  PREVIEW_KEY, PREVIEW_URL, PREVIEW_SHA, PREVIEW_BRANCH, PREVIEW_NUMBER,
  PREVIEW_PRODUCTION  set by previewd; shown in the footer and /healthz
  LOG_LEVEL           debug, info, warn or error (default info)
`

// shutdownTimeout bounds how long serve waits for requests in flight after
// SIGINT or SIGTERM.
const shutdownTimeout = 5 * time.Second

// Main runs the markdown-editor command line. args are the arguments after
// the program name: "serve" (the default), "migrate" or "help". Configuration
// comes from the environment and banner.txt in the working directory. Logs
// go to stderr. serve runs until ctx is cancelled or the process receives
// SIGINT or SIGTERM. Main returns the process exit code: 0 on success, 1 on
// failure, 2 for bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, os.Getenv, ".", stdout, stderr)
}

// run is Main with the environment and working directory made explicit.
func run(ctx context.Context, args []string, getenv func(string) string, dir string, stdout, stderr io.Writer) int {
	start := time.Now()
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve", "migrate":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "markdown-editor: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	flags := flag.NewFlagSet(cmd, flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "markdown-editor %s: unexpected arguments %q\n", cmd, flags.Args())
		return 2
	}

	cfg, err := loadConfig(getenv, dir)
	if err != nil {
		slog.New(slog.NewTextHandler(stderr, nil)).Error("invalid configuration", "command", cmd, "err", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	switch cmd {
	case "migrate":
		err = migrate(ctx, cfg, log)
	case "serve":
		err = serve(ctx, cfg, log, start)
	}
	if err != nil {
		log.Error("command failed", "command", cmd, "err", err)
		return 1
	}
	return 0
}

// connect opens the configured database, checks that it is reachable and,
// for PostgreSQL, that current_schema() is DATABASE_SCHEMA.
func connect(ctx context.Context, cfg config, log *slog.Logger) (*db, error) {
	t, err := chooseDatabase(cfg)
	if err != nil {
		return nil, err
	}
	d, err := openDB(t)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch d.kind {
	case kindSQLite:
		if cfg.DatabaseSchema != "" {
			log.Warn("DATABASE_SCHEMA is ignored for sqlite", "schema", cfg.DatabaseSchema)
		}
		if err := d.PingContext(ctx); err != nil {
			d.Close()
			return nil, fmt.Errorf("open sqlite database %s: %w", t.path, err)
		}
	case kindPostgres:
		if err := d.checkSchema(ctx, cfg.DatabaseSchema); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// migrate applies the embedded migrations that the database lacks.
func migrate(ctx context.Context, cfg config, log *slog.Logger) error {
	d, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	p, err := newMigrator(d)
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		results = partial.Applied
	}
	for _, r := range results {
		log.Info("migration applied", "version", r.Source.Version, "file", path.Base(r.Source.Path), "duration", r.Duration)
	}
	if partial != nil {
		return fmt.Errorf("migration %d (%s) failed: %w",
			partial.Failed.Source.Version, path.Base(partial.Failed.Source.Path), partial.Err)
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	version, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	log.Info("database is up to date", "version", version, "applied", len(results), "database", d.label())
	return nil
}

// serve runs the web app until ctx is cancelled or a signal arrives.
func serve(ctx context.Context, cfg config, log *slog.Logger, start time.Time) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	d, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	p, err := newMigrator(d)
	if err != nil {
		return err
	}
	st, err := checkMigrations(ctx, d, p)
	if err != nil {
		return err
	}
	if len(st.pending) > 0 {
		return &pendingMigrationsError{status: st, files: sourceFiles(p)}
	}
	if len(st.unknown) > 0 {
		log.Warn("database has migrations this build does not know", "versions", st.unknown)
	}

	srv, err := newServer(cfg, d, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, cfg.Port))
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("listening",
		"addr", ln.Addr().String(),
		"url", cfg.PreviewURL,
		"database", d.label(),
		"schema_version", st.current,
		"banner", cfg.Banner,
		"startup", time.Since(start).Round(time.Microsecond),
	)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal kills the process the default way
	log.Info("shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown incomplete", "err", err)
		hs.Close()
	}
	log.Info("stopped")
	return nil
}
