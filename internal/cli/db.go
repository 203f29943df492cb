package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/daemon"
	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/database/postgres"
	"github.com/previewd/previewd/internal/env"
)

func newDB() *cobra.Command {
	var path, key string
	cmd := &cobra.Command{
		Use:   "db create|migrate|drop|check|refresh-template --config FILE [--key KEY]",
		Short: "One environment's database step on its own, for CI pipelines",
		Long: `create makes the environment's database if it is missing and prints its
variables (--format text, github, dotenv or json); migrate also runs the
config's migrate command with them; drop removes it. All three are
idempotent, use only the config's database section (and migrate), and run
the same code as serve. check (no key) probes the PostgreSQL setup, as
serve does at start: whether session state leaks between clients of one
role at appHost (a pooler without a reset query), and whether adminURL
looks pooled without adminPooled; it exits 1 on a leak. refresh-template
(no key) replaces database.postgres.template with a masked copy of
production.`,
	}
	cmd.PersistentFlags().StringVarP(&path, "config", "c", "previewd.yaml", "config file")
	cmd.PersistentFlags().StringVar(&key, "key", "", "environment key, e.g. pr-42 (required)")
	setup := func(c *cobra.Command) (*config.Config, database.Provider, database.Target, error) {
		if err := env.CheckKey(key); err != nil {
			return nil, nil, database.Target{}, fmt.Errorf("--key: %w", err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			return nil, nil, database.Target{}, configError(c, err)
		}
		p, err := daemon.OpenCLIDatabase(c.Context(), cfg)
		if err != nil {
			return nil, nil, database.Target{}, err
		}
		return cfg, p, database.Target{Key: key, Production: key == env.ProductionKey}, nil
	}
	var format string
	var show bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create the database if missing and print its variables",
		Long: `create makes the environment's database if it is missing (idempotent) and
prints its variables, in --format:

  text    NAME=value lines, each password shown as xxxxx; --show-secrets
          prints them in clear (the output of earlier versions)
  github  for a GitHub Actions step: an ::add-mask:: command for each password
          and each value that holds one, on stdout, then the NAME=value lines
          appended to the file $GITHUB_ENV names (created 0600), so the next
          steps get them as variables; without $GITHUB_ENV, on stdout after
          the masks. Run it as is, not with ">> $GITHUB_ENV": workflow
          commands are read from stdout only.
  dotenv  NAME='value' lines quoted for POSIX sh (set -a; . ./db.env; set +a)
  json    one JSON object of the variables`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			switch format {
			case formatText, formatGitHub, formatDotenv, formatJSON:
			default:
				return usage(fmt.Errorf("--format: unknown value %q; want text, github, dotenv or json", format))
			}
			if format == formatGitHub {
				// Before any SQL runs.
				if err := checkGitHubEnv(c.OutOrStdout(), os.Getenv("GITHUB_ENV")); err != nil {
					return err
				}
			}
			_, p, t, err := setup(c)
			if err != nil {
				return err
			}
			conn, err := p.Ensure(c.Context(), t)
			if err != nil {
				return err
			}
			if format == formatGitHub {
				envFile := os.Getenv("GITHUB_ENV")
				if err := writeGitHub(c.OutOrStdout(), envFile, conn.Vars); err != nil {
					return err
				}
				if envFile != "" {
					fmt.Fprintf(c.ErrOrStderr(), "previewd: %s appended to $GITHUB_ENV\n", strings.Join(sortedNames(conn.Vars), ", "))
				}
				return nil
			}
			if err := writeVars(c.OutOrStdout(), format, conn.Vars, show); err != nil {
				return err
			}
			if format == formatText && !show && masking(conn.Vars) {
				fmt.Fprintln(c.ErrOrStderr(), "previewd: passwords shown as "+masked+"; --format github|dotenv|json gives them to a pipeline, --show-secrets prints them")
			}
			return nil
		},
	}
	create.Flags().StringVar(&format, "format", formatText, "output: text, github, dotenv or json")
	create.Flags().BoolVar(&show, "show-secrets", false, "text: print passwords in clear")
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Create the database if missing, then run the migrate command with its variables",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cfg, p, t, err := setup(c)
			if err != nil {
				return err
			}
			if cfg.Migrate == "" {
				return errors.New("migrate: the config has no migrate command")
			}
			conn, err := p.Ensure(c.Context(), t)
			if err != nil {
				return err
			}
			// The same variables serve gives the migrate command: the
			// basic and inherited ones of previewd's environment (none
			// of its secrets), the PREVIEW_* ones and the database's.
			// The pipeline that runs this is the operator's, so the
			// change counts as trusted and gets the configured env.
			src := env.KeySource(t.Key)
			src.Trusted = true
			rel := env.Release{Source: src, URL: cfg.EnvURL(t.Key), Vars: conn.Vars}
			run := exec.CommandContext(c.Context(), "/bin/sh", "-c", cfg.Migrate)
			run.Env = env.Environ(os.Environ(), cfg.Runtime.Local.InheritEnv, rel, cfg.Runtime.Local.Env)
			run.Stdout, run.Stderr = c.OutOrStdout(), c.ErrOrStderr()
			if err := run.Run(); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			return nil
		},
	}
	drop := &cobra.Command{
		Use:   "drop",
		Short: "Drop the environment's database and role (never production's)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			_, p, t, err := setup(c)
			if err != nil {
				return err
			}
			if t.Production {
				return database.ErrProduction
			}
			if err := p.Drop(c.Context(), p.Items(t)); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "dropped %s\n", t.Key)
			return nil
		},
	}
	check := &cobra.Command{
		Use:   "check",
		Short: "Probe appHost for session state leaking between clients (a pooler without a reset query)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return configError(c, err)
			}
			p, err := daemon.OpenCLIDatabase(c.Context(), cfg)
			if err != nil {
				return err
			}
			if cl, ok := p.(interface{ Close() }); ok {
				defer cl.Close()
			}
			res, ok, err := daemon.CheckPooling(c.Context(), p)
			switch {
			case err != nil:
				return err
			case !ok:
				fmt.Fprintf(c.OutOrStdout(), "database.kind %s: nothing to check\n", cfg.Database.Kind)
				return nil
			}
			if res.AdminWarning != "" {
				fmt.Fprintf(c.ErrOrStderr(), "warning: %s\n", res.AdminWarning)
			}
			if res.Leak {
				return errors.New(res.Message)
			}
			fmt.Fprintf(c.OutOrStdout(), "ok: %s\n", res.Message)
			return nil
		},
	}
	var unmasked bool
	refresh := &cobra.Command{
		Use:   "refresh-template",
		Short: "Replace the template with a fresh copy of production, masked and verified",
		Long: `refresh-template copies production's database (productionURL's, or else
adminURL's) into a new database, schema and rows, read in one read-only
transaction; applies database.postgres.masking to it in one transaction,
verifying that every non-null value of each masked column changed; and only
then swaps it in place of database.postgres.template. A masking expression
that errors or leaves a value unchanged is named, and the old template stays.
Production is never written. The template must have no sessions while it is
swapped; the command waits up to 30s for them to end, then names them.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return configError(c, err)
			}
			if cfg.Database.Kind != "postgres" {
				return fmt.Errorf("database.kind %s: refresh-template needs postgres", cfg.Database.Kind)
			}
			if cfg.Database.Postgres.Template == "" {
				return errors.New("database.postgres.template: not set; refresh-template replaces it")
			}
			p, err := daemon.OpenCLIDatabase(c.Context(), cfg)
			if err != nil {
				return err
			}
			if cl, ok := p.(interface{ Close() }); ok {
				defer cl.Close()
			}
			r, ok := p.(templateRefresher)
			if !ok {
				return fmt.Errorf("database.kind %s: the provider cannot refresh a template", cfg.Database.Kind)
			}
			if len(cfg.Database.Postgres.Masking) == 0 && !unmasked {
				return errors.New("database.postgres.masking is empty: every production row would reach the previews as it is; " +
					"add masking for the columns that hold personal data, or pass --unmasked to refresh anyway")
			}
			// The config's masking, whatever the provider was built with.
			rep, err := r.RefreshTemplateWith(c.Context(), cfg.Database.Postgres.Masking)
			if err != nil {
				return err
			}
			printRefresh(c.OutOrStdout(), rep)
			return nil
		},
	}
	refresh.Flags().BoolVar(&unmasked, "unmasked", false, "refresh even though database.postgres.masking is empty")
	cmd.AddCommand(create, migrate, drop, check, refresh)
	return cmd
}

// templateRefresher is a provider that can refresh its template
// (postgres.Provider).
type templateRefresher interface {
	RefreshTemplateWith(ctx context.Context, masking map[string]string) (postgres.RefreshReport, error)
}

// printRefresh prints what a template refresh did.
func printRefresh(w io.Writer, r postgres.RefreshReport) {
	fmt.Fprintf(w, "refreshed template %s from %s in %s\n", r.Template, r.Source, r.Took.Round(time.Millisecond))
	fmt.Fprintf(w, "  copied: %d tables, %d rows, %s\n", r.Tables, r.Rows, humanBytes(r.Bytes))
	if len(r.Masked) == 0 {
		fmt.Fprintln(w, "  masked: nothing (database.postgres.masking is empty)")
	}
	for _, m := range r.Masked {
		fmt.Fprintf(w, "  masked: %s (%d values)\n", m.Column, m.Values)
	}
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", s)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
