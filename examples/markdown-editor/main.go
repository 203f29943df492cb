// Command markdown-editor is the example application that previewd deploys in
// its demo and tests: a small markdown editor backed by SQLite or PostgreSQL.
// All of its logic lives in package app.
package main

import (
	"context"
	"os"

	"github.com/previewd/previewd/examples/markdown-editor/app"
)

func main() {
	os.Exit(app.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
