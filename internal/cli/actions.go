package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	goruntime "runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/previewd/previewd/internal/client"
	"github.com/previewd/previewd/internal/env"
)

func newLogs() *cobra.Command {
	var r *remote
	var follow bool
	var n int
	cmd := &cobra.Command{
		Use:   "logs KEY",
		Short: "Print an environment's build, migrate and app output (-f: follow it)",
		Args:  keyArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n <= 0 {
				return usage(fmt.Errorf("-n: %d: want a number of lines above 0", n))
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !follow {
				s, err := c.Logs(cmd.Context(), args[0], n)
				if err != nil {
					return err
				}
				io.WriteString(out, s)
				if s != "" && s[len(s)-1] != '\n' {
					io.WriteString(out, "\n")
				}
				return nil
			}
			err = c.FollowLogs(cmd.Context(), args[0], n, func(l env.LogLine) error {
				if l.Step != "" {
					fmt.Fprintf(out, "[%s] %s\n", l.Step, l.Text)
				} else {
					fmt.Fprintln(out, l.Text)
				}
				return nil
			})
			if errors.Is(err, client.ErrNoStream) {
				return errors.New("this previewd does not follow logs: printed its last lines only")
			}
			return err
		},
	}
	r = addRemote(cmd, false)
	cmd.ValidArgsFunction = completeKeys(r)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output as it is written")
	cmd.Flags().IntVarP(&n, "lines", "n", 200, "how many of the last lines to print first (at most 5000)")
	return cmd
}

// action is one command that asks previewd to act on an environment.
type action struct {
	use, short string
	// do asks for it; args[0] is the key.
	do func(ctx context.Context, c *client.Client, args []string) (client.Answer, error)
	// check checks the arguments after the key (usage errors).
	check func(args []string) error
	// say is what the answer says in a table.
	say func(key string, a client.Answer) string
	// wait: the command shows the steps until ready or failed
	// (redeploy, wake) unless --no-wait.
	wait bool
}

func newActions() []*cobra.Command {
	accepted := func(verb string) func(string, client.Answer) string {
		return func(key string, a client.Answer) string {
			s := verb + " of " + key + " accepted"
			if a.Note != "" {
				s += " (" + a.Note + ")"
			}
			return s
		}
	}
	acts := []action{
		{use: "redeploy KEY", short: "Deploy an environment's SHA again, even one that failed, and show the steps", wait: true,
			do: func(ctx context.Context, c *client.Client, a []string) (client.Answer, error) {
				return c.Redeploy(ctx, a[0])
			}},
		{use: "reset-db KEY", short: "Give a preview a fresh database (template or seed, then its migrations), built while the old one serves", say: accepted("reset-db"),
			do: func(ctx context.Context, c *client.Client, a []string) (client.Answer, error) {
				return c.ResetDB(ctx, a[0])
			}},
		{use: "db-tier KEY TIER", short: "Choose a preview's database tier (schema, clone, empty, or default); another tier re-creates its database (a preview:db= label wins)",
			check: func(a []string) error {
				switch a[0] {
				case env.DBTierSchema, env.DBTierClone, env.DBTierEmpty, "default":
					return nil
				}
				return fmt.Errorf("TIER: %q: want %s, %s, %s or default", a[0], env.DBTierSchema, env.DBTierClone, env.DBTierEmpty)
			},
			do: func(ctx context.Context, c *client.Client, a []string) (client.Answer, error) {
				return c.DBTier(ctx, a[0], a[1])
			},
			say: accepted("db-tier")},
		{use: "wake KEY", short: "Start a sleeping (or queued) preview again, and show the steps", wait: true,
			do: func(ctx context.Context, c *client.Client, a []string) (client.Answer, error) {
				return c.Wake(ctx, a[0])
			}},
		{use: "sleep KEY", short: "Put a preview to sleep now (its data stays; a visit wakes it)", say: accepted("sleep"),
			do: func(ctx context.Context, c *client.Client, a []string) (client.Answer, error) {
				return c.Sleep(ctx, a[0])
			}},
		{use: "extend KEY DUR", short: "Keep a preview from expiring for DUR from now (12h, 3d, 2w; at most 30d)",
			check: func(a []string) error {
				if d, err := env.ParseDuration(a[0]); err != nil || d <= 0 {
					if err == nil {
						err = fmt.Errorf("%q: extend by more than nothing", a[0])
					}
					return fmt.Errorf("DUR: %w", err)
				}
				return nil
			},
			do: func(ctx context.Context, c *client.Client, a []string) (client.Answer, error) {
				return c.Extend(ctx, a[0], a[1])
			},
			say: func(key string, a client.Answer) string {
				if a.ExpiresAt == nil {
					s := key + " never expires"
					if a.Note != "" {
						s += " (" + a.Note + ")"
					}
					return s
				}
				return key + " now expires at " + a.ExpiresAt.Local().Format("2006-01-02 15:04 MST")
			}},
		{use: "down KEY", short: "Remove an environment and keep it removed (pushes do not redeploy it) until up (admin)",
			do: func(ctx context.Context, c *client.Client, a []string) (client.Answer, error) {
				return c.Down(ctx, a[0])
			},
			say: func(key string, a client.Answer) string {
				return "down of " + key + " accepted: it is being removed, and stays removed until previewd up " + key
			}},
		{use: "up KEY", short: "Deploy an environment put down again", say: accepted("up"),
			do: func(ctx context.Context, c *client.Client, a []string) (client.Answer, error) { return c.Up(ctx, a[0]) }},
	}
	cmds := make([]*cobra.Command, 0, len(acts))
	for _, a := range acts {
		cmds = append(cmds, newAction(a))
	}
	return cmds
}

func newAction(a action) *cobra.Command {
	var r *remote
	var noWait bool
	var timeout time.Duration
	extra := 0
	if a.check != nil {
		extra = 1
	}
	cmd := &cobra.Command{
		Use:   a.use,
		Short: a.short,
		Args:  keyArgs(extra),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.check != nil {
				if err := a.check(args[1:]); err != nil {
					return usage(err)
				}
			}
			if a.wait && timeout <= 0 {
				return usage(fmt.Errorf("--timeout: %s: want a duration above 0", timeout))
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			asJSON, _ := r.json()
			out := cmd.OutOrStdout()
			if a.wait && !noWait {
				// The steps go to stdout, or to stderr when stdout
				// carries the JSON answer.
				steps := out
				if asJSON {
					steps = cmd.ErrOrStderr()
				}
				ans, err := waitFor(cmd.Context(), c, args[0], cmd.Name(), timeout, steps, func(ctx context.Context) (client.Answer, error) {
					return a.do(ctx, c, args)
				})
				if asJSON && ans != nil {
					printJSON(out, ans)
				}
				return err
			}
			ans, err := a.do(cmd.Context(), c, args)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, ans)
			}
			say := a.say
			if say == nil {
				say = func(key string, ans client.Answer) string {
					s := cmd.Name() + " of " + key + " accepted"
					if ans.Note != "" {
						s += " (" + ans.Note + ")"
					}
					return s
				}
			}
			fmt.Fprintln(out, say(args[0], ans))
			return nil
		},
	}
	r = addRemote(cmd, true)
	cmd.ValidArgsFunction = completeKeys(r)
	if a.wait {
		cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once previewd accepted, without showing the steps")
		cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "how long to show the steps before giving up waiting (previewd goes on)")
	}
	return cmd
}

func newOpen() *cobra.Command {
	var r *remote
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "open KEY",
		Short: "Print an environment's URL and open it in the browser (on a terminal)",
		Args:  keyArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			e, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.URL == "" {
				return fmt.Errorf("%s has no URL yet (%s)", e.Key, e.Status)
			}
			fmt.Fprintln(cmd.OutOrStdout(), e.URL)
			if tty, _ := isTerminal(cmd.OutOrStdout()); !tty || noBrowser {
				return nil
			}
			if err := browse(e.URL); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "previewd: could not start a browser: %v\n", err)
			}
			return nil
		},
	}
	r = addRemote(cmd, false)
	cmd.ValidArgsFunction = completeKeys(r)
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the URL")
	return cmd
}

// browse starts the desktop's browser on url, without waiting for it.
func browse(url string) error {
	name := "xdg-open"
	if goruntime.GOOS == "darwin" {
		name = "open"
	}
	cmd := exec.Command(name, url)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
