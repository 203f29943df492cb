// Package e2e holds end-to-end tests: a real git repository, previewd
// in-process or as its own process, the example app built from source, and
// HTTP through the preview proxy.
package e2e
