// Package previewd is the module root. It embeds the module's go.mod and
// go.sum so that `previewd demo` can give the example app it writes into a
// throwaway repository the same, already downloaded, dependencies.
package previewd

import _ "embed"

// GoMod and GoSum are the module's go.mod and go.sum.
var (
	//go:embed go.mod
	GoMod []byte
	//go:embed go.sum
	GoSum []byte
)
