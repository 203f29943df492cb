// Package cli holds previewd's commands, built with cobra: serve, demo,
// validate, db, version, and the commands against a running previewd (ls,
// get, logs, redeploy, sleep, wake, extend, down, up, open) through
// internal/client, with shell completion of their keys. Each command
// parses its flags and calls into the packages that do the work. Exit
// codes: 0 ok, 1 error, 2 usage.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/env"
)

// Version is set at build time with -ldflags "-X .../cli.Version=v1.2.3".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// Run runs the command line args and returns the exit code: 0 ok, 1
// error, 2 usage (wrong arguments, an unknown command or flag, a bad
// flag value).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if !errors.As(err, &ee) && strings.HasPrefix(err.Error(), "unknown command ") {
		err = usage(err)
	}
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "previewd:", ee.err)
		}
		if ee.code == 2 && cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "previewd:", err)
	return 1
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "previewd",
		Short:         "A preview environment for every pull request",
		Long:          "previewd gives every pull request or branch its own running copy of an app, with its own database and URL, and removes it when the change goes away.\n\nThe commands against a running previewd (ls, get, logs, redeploy, ...) take --server and --token, or " + EnvServer + " and " + EnvToken + ". Exit codes: 0 ok, 1 error, 2 usage.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(), newDemo(), newValidate(), newLs(), newGet(), newLogs(), newOpen(), newDB(), newVersion())
	root.AddCommand(newActions()...)
	// Wrong arguments and bad flags are usage errors (exit 2).
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage(err) })
	var wrap func(*cobra.Command)
	wrap = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return usage(err)
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			wrap(sub)
		}
	}
	wrap(root)
	return root
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "previewd", version())
			return nil
		},
	}
}

func newValidate() *cobra.Command {
	var path, repoFile string
	cmd := &cobra.Command{
		Use:   "validate --config FILE [--repo-file PATH]",
		Short: "Check a config file and the app's .previewd.yaml; name each bad field",
		Long: "Check previewd's config file and, when run inside a repository, the app's own " + env.RepoFile + "\n" +
			"at the root of its working tree (or the file --repo-file names). In an app's repository\n" +
			"without previewd's config, only the repository's file is checked.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rf, err := findRepoFile(repoFile)
			if err != nil {
				return err
			}
			var failed error
			if _, serr := os.Stat(path); cmd.Flags().Changed("config") || rf == "" || serr == nil {
				failed = validateConfig(cmd, path)
			}
			if rf != "" {
				failed = errors.Join(failed, validateRepoFile(cmd, rf))
			}
			return failed
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "previewd.yaml", "config file")
	cmd.Flags().StringVar(&repoFile, "repo-file", "", "the app's "+env.RepoFile+" to check (default: the one at the root of the working tree, if any)")
	return cmd
}

func validateConfig(cmd *cobra.Command, path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return configError(cmd, err)
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	// serve refuses what CheckExposure refuses; say so here.
	if err := cfg.CheckExposure(); err != nil {
		return configError(cmd, err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), path+": ok")
	return nil
}

// validateRepoFile checks the app's own file as serve reads it at a
// commit.
func validateRepoFile(cmd *cobra.Command, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if _, err := config.ParseRepoFile(path, data); err != nil {
		var ke *config.KeyError
		if errors.As(err, &ke) {
			fmt.Fprintln(cmd.ErrOrStderr(), ke.Error())
			return &exitError{code: 1}
		}
		return configError(cmd, err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), path+": ok")
	return nil
}

// findRepoFile returns the repository file to check: the one named, or
// .previewd.yaml at the root of the git working tree the current
// directory is in, or "" when there is none.
func findRepoFile(named string) (string, error) {
	if named != "" {
		return named, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
			p := filepath.Join(dir, env.RepoFile)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			return "", nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", nil
		}
		dir = parent
	}
}

// configError prints each bad field on its own line and exits 1.
func configError(cmd *cobra.Command, err error) error {
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintln(cmd.ErrOrStderr(), e.Error())
		}
		return &exitError{code: 1}
	}
	return err
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
