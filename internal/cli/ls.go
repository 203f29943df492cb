package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/previewd/previewd/internal/client"
	"github.com/previewd/previewd/internal/env"
)

// The commands against a running previewd: ls, get, logs, the actions
// (actions.go) and open. Each takes --server, --token (or
// PREVIEWD_SERVER, PREVIEWD_TOKEN) and, where it prints, -o json.

func newLs() *cobra.Command {
	var asJSON bool
	var r *remote
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the live environments of a running previewd",
		Long:  "List the live environments of a running previewd. With auth on, set " + EnvToken + " to a viewer token.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				r.output = "json"
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			l, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if j, _ := r.json(); j {
				return printJSON(cmd.OutOrStdout(), l)
			}
			if l.Source != nil && !l.Source.OK {
				fmt.Fprintf(cmd.ErrOrStderr(), "previewd: warning: the last listing of the repository failed: %s\n", l.Source.Error)
			}
			return printList(cmd.OutOrStdout(), l.Environments, time.Now())
		},
	}
	r = addRemote(cmd, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (as -o json)")
	cmd.Flags().MarkHidden("json")
	return cmd
}

// printList prints the environments as a table.
func printList(w io.Writer, envs []env.Environment, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSTATUS\tSHA\tAGE\tLAST-ACTIVITY\tURL")
	for _, e := range envs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Key, e.Status, dash(env.ShortSHA(e.SHA)), ago(&e.CreatedAt, now), ago(e.LastActivityAt, now), dash(e.URL))
	}
	return tw.Flush()
}

// ago says how long ago t was, shortly ("45s", "12m", "5h", "3d"); "-"
// for none.
func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return env.ShortDuration(now.Sub(*t))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newGet() *cobra.Command {
	var r *remote
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Show one environment: its fields, usage and recent events",
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
			if j, _ := r.json(); j {
				return printJSON(cmd.OutOrStdout(), e)
			}
			printEnvironment(cmd.OutOrStdout(), e, time.Now())
			return nil
		},
	}
	r = addRemote(cmd, true)
	cmd.ValidArgsFunction = completeKeys(r)
	return cmd
}

// printEnvironment prints one environment's fields, then its recent
// events (at most 10, newest first).
func printEnvironment(w io.Writer, e client.Environment, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", name, value)
		}
	}
	when := func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return t.Local().Format("2006-01-02 15:04:05 MST") + " (" + ago(t, now) + " ago)"
	}
	kind := string(e.Kind)
	if e.Number > 0 {
		kind += fmt.Sprintf(" #%d", e.Number)
	}
	msg, rest, _ := strings.Cut(strings.TrimSpace(e.Message), "\n")
	field("key", e.Key)
	field("kind", kind)
	field("branch", e.Branch)
	field("sha", e.SHA)
	field("status", string(e.Status))
	field("message", msg)
	field("url", e.URL)
	field("database", e.Database)
	field("database tier", e.DBTier)
	field("created", when(&e.CreatedAt))
	field("updated", when(&e.UpdatedAt))
	field("ready", when(e.ReadyAt))
	field("last activity", when(e.LastActivityAt))
	switch {
	case e.Kept:
		field("expires", "never (kept)")
	case e.ExpiresAt != nil:
		field("expires", e.ExpiresAt.Local().Format("2006-01-02 15:04:05 MST")+" (in "+ago(&now, *e.ExpiresAt)+")")
	}
	if e.Down {
		field("down", "yes: removed on request, until previewd up "+e.Key)
	}
	if e.Usage != nil {
		field("usage", e.Usage.Line())
	}
	tw.Flush()
	if rest = strings.TrimSpace(rest); rest != "" {
		fmt.Fprintln(w)
		for _, l := range strings.Split(rest, "\n") {
			fmt.Fprintln(w, "  "+l)
		}
	}
	if len(e.Events) == 0 {
		return
	}
	fmt.Fprintln(w, "\nrecent events:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, ev := range e.Events {
		if i == 10 {
			break
		}
		line, _, _ := strings.Cut(ev.Message, "\n")
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", ev.Time.Local().Format("01-02 15:04:05"), ev.Reason, dash(env.ShortSHA(ev.SHA)), line)
	}
	tw.Flush()
}
