package forge

import "path"

// MatchAny reports whether name matches one of the path.Match globs. A
// malformed glob matches nothing (config validation rejects them).
func MatchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// Included applies an include list (empty means everything) and an
// exclude list to name.
func Included(include, exclude []string, name string) bool {
	if len(include) > 0 && !MatchAny(include, name) {
		return false
	}
	return !MatchAny(exclude, name)
}
