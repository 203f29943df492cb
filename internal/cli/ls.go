package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/env"
)

func newLs() *cobra.Command {
	var path, server string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--server URL | --config FILE]",
		Short: "List the live environments of a running previewd",
		Long:  "List the live environments of a running previewd. With auth on, set PREVIEWD_TOKEN to a viewer token.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if server == "" {
				server = "http://127.0.0.1:8080"
				if cmd.Flags().Changed("config") {
					cfg, err := config.Load(path)
					if err != nil {
						return configError(cmd, err)
					}
					server = "http://" + cfg.Listen
				}
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, strings.TrimRight(server, "/")+"/api/v1/environments", nil)
			if err != nil {
				return err
			}
			// The token comes from the environment, never argv.
			if tok := os.Getenv("PREVIEWD_TOKEN"); tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			client := &http.Client{Timeout: 10 * time.Second}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("asking previewd at %s: %w", server, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("previewd at %s answered %s", server, resp.Status)
			}
			var body struct {
				Environments []env.Environment `json:"environments"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				return fmt.Errorf("reading answer: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(body.Environments)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tSTATUS\tBRANCH\tSHA\tURL\tMESSAGE")
			for _, e := range body.Environments {
				msg, _, _ := strings.Cut(e.Message, "\n")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Key, e.Status, e.Branch, env.ShortSHA(e.SHA), e.URL, msg)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "previewd's address (default http://127.0.0.1:8080, or the config's listen)")
	cmd.Flags().StringVarP(&path, "config", "c", "previewd.yaml", "config file to take the address from")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
