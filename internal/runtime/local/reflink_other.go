//go:build !linux

package local

import "io/fs"

// cloneFile: reflinks are made on Linux only.
func cloneFile(from, to string, mode fs.FileMode) error { return errNoReflink }
