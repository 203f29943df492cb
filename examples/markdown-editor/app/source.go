package app

import "embed"

// Source holds the files that make up this package: its Go sources (tests
// included), SQL migrations, HTML templates and static assets. previewd's demo
// copies them into a throwaway repository with its own go.mod and builds the
// app from there, which is why this package imports nothing else from
// previewd.
//
//go:embed *.go migrations templates static
var Source embed.FS
