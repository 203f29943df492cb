// Package appspec gives each commit its app spec: previewd's config with
// the app-shaped keys of the repository's own .previewd.yaml at that
// commit over it (a fork's change reads production's file instead, never
// its own), and says which files a change touches against its base, for
// the path filters. Both are read from the shared git object cache, with
// no checkout, so they work for every runtime.
package appspec
