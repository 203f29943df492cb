package cli

import (
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/previewd/previewd/internal/demo"
)

func newDemo() *cobra.Command {
	var listen, dir, level string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a self-contained demo: a throwaway repository with the example app, on embedded defaults",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := exec.LookPath("git"); err != nil {
				return demo.ErrNoGit
			}
			tty, _ := isTerminal(cmd.OutOrStdout())
			return demo.Run(cmd.Context(), demo.Options{
				TTY:     tty,
				Listen:  listen,
				Dir:     dir,
				Version: version(),
				Out:     cmd.OutOrStdout(),
				Logger:  newLogger(cmd.ErrOrStderr(), level),
			})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address to serve on (a free port is used if it is busy)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory to keep the demo in (default: a temporary one, removed on exit)")
	cmd.Flags().StringVar(&level, "log-level", "warn", "log level: debug, info, warn or error")
	return cmd
}
