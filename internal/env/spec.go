package env

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// RepoFile is the name of the app's own file at the root of its
// repository: the app-shaped settings of each commit (see AppSpec).
const RepoFile = ".previewd.yaml"

// AppSpec is how one commit of the app is built, run and filtered:
// previewd's config, with the app-shaped keys of the repository's
// RepoFile at that commit (or, for a fork, at production's) over it. It
// never holds forge, auth, database admin or secret settings.
type AppSpec struct {
	// Build, Run and Migrate are shell commands (runtime.local.build,
	// runtime.local.run, migrate).
	Build, Run, Migrate string
	// MigrateSet is true when the repository's file sets migrate (to
	// empty, too: no migrations), so a runtime with its own migrate
	// command (runtime.kubernetes.migrate.command) yields to it.
	MigrateSet bool
	// HealthPath is polled until it answers 2xx.
	HealthPath string
	// StartTimeout bounds the wait for health; zero leaves the runtime's.
	StartTimeout time.Duration
	// Processes, Caches and Outputs are runtime.local.processes, caches
	// and outputs.
	Processes map[string]AppProcess
	Caches    []AppCache
	Outputs   []string
	// Paths are the path filters: a change whose diff against its base
	// touches none of them is not deployed. Empty deploys every change.
	Paths []string
	// Manifests is runtime.kubernetes.manifests.
	Manifests string
	// From says where the repository's part came from, for people:
	// ".previewd.yaml at abc1234", or "" when only the config applies.
	From string
}

// AppProcess is one process of runtime.local.processes.
type AppProcess struct {
	Run        string
	HealthPath string
	HTTP       bool
}

// AppCache is one entry of runtime.local.caches.
type AppCache struct {
	Path string
	Key  []string
	Run  string
}

// Touches reports whether one of files (slash-separated paths inside the
// repository) matches one of the spec's Paths. With no Paths every change
// touches.
func (s AppSpec) Touches(files []string) bool {
	if len(s.Paths) == 0 {
		return true
	}
	for _, f := range files {
		for _, g := range s.Paths {
			if MatchPath(g, f) {
				return true
			}
		}
	}
	return false
}

// MatchPath reports whether name, a slash-separated path inside the
// repository, matches glob. Each segment is matched with path.Match (*,
// ?, [...] stay within a segment); a segment "**" matches any number of
// segments, none included, so apps/web/** matches every file under
// apps/web and **/*.go every Go file. A glob ending in "/" matches
// everything under that directory. A malformed glob matches nothing
// (CheckPathGlob rejects it).
func MatchPath(glob, name string) bool {
	glob = strings.TrimPrefix(glob, "/")
	if strings.HasSuffix(glob, "/") {
		glob += "**"
	}
	return matchSegments(strings.Split(glob, "/"), strings.Split(name, "/"))
}

func matchSegments(g, n []string) bool {
	for len(g) > 0 {
		if g[0] == "**" {
			// Collapse runs of ** and try every split.
			for len(g) > 0 && g[0] == "**" {
				g = g[1:]
			}
			if len(g) == 0 {
				return true
			}
			for i := 0; i <= len(n); i++ {
				if matchSegments(g, n[i:]) {
					return true
				}
			}
			return false
		}
		if len(n) == 0 {
			return false
		}
		if ok, err := path.Match(g[0], n[0]); err != nil || !ok {
			return false
		}
		g, n = g[1:], n[1:]
	}
	return len(n) == 0
}

// CheckPathGlob returns an error saying what is wrong with a path filter,
// or nil.
func CheckPathGlob(glob string) error {
	if strings.TrimSpace(glob) == "" {
		return fmt.Errorf("empty glob")
	}
	for _, seg := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(glob, "/"), "/"), "/") {
		if seg == ".." {
			return fmt.Errorf("%q leaves the repository", glob)
		}
		if strings.Contains(seg, "**") && seg != "**" {
			return fmt.Errorf("%q: ** must be a whole path segment (e.g. apps/**/x.go)", glob)
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("%q is not a valid glob: %w", glob, err)
		}
	}
	return nil
}
