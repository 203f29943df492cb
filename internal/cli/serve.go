package cli

import (
	"github.com/spf13/cobra"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/daemon"
)

func newServe() *cobra.Command {
	var path string
	var stopApps bool
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the controller, API, dashboard, webhooks and preview proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return configError(cmd, err)
			}
			// A previewd reachable from other machines without an auth
			// section would hand every environment to anyone, and one
			// that gives production the admin role would hand it every
			// preview's database: refuse.
			if err := cfg.CheckExposure(); err != nil {
				return configError(cmd, err)
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.LogLevel)
			for _, w := range cfg.Warnings() {
				log.Warn("config", "warning", w)
			}
			d, err := daemon.New(cmd.Context(), cfg, daemon.Options{Version: version(), Logger: log, StopOnExit: stopApps})
			if err != nil {
				return err
			}
			return d.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "previewd.yaml", "config file")
	cmd.Flags().BoolVar(&stopApps, "stop-apps-on-exit", false, "on SIGTERM or SIGINT, stop every app (SIGTERM, then SIGKILL after a grace period) instead of leaving them running for the next previewd to adopt (also runtime.local.stopAppsOnExit)")
	return cmd
}
