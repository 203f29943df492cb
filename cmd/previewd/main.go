// Command previewd gives every pull request or branch its own preview
// environment. See the README.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/previewd/previewd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
