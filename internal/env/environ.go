package env

import (
	"slices"
	"strconv"
	"strings"
)

// BaseEnv names the variables of previewd's own environment that every
// command of an app (build, migrate, run) inherits: what a shell, a
// compiler and TLS need, and nothing that could be a secret of previewd's.
// Variables whose names start with LC_ are inherited too.
var BaseEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "CGO_ENABLED", "CC", "CXX",
	"GOPATH", "GOROOT", "GOCACHE", "GOMODCACHE", "GOPROXY", "GOSUMDB", "GOPRIVATE", "GONOPROXY", "GONOSUMDB",
	"GOINSECURE", "GOFLAGS", "GOTOOLCHAIN", "GOWORK", "GOENV",
}

// Environ returns the environment of a command of the app for rel, as
// NAME=value entries without duplicate names:
//
//   - the entries of base (previewd's own environment, os.Environ() as
//     the caller passes it) named in BaseEnv or inherit, or starting
//     with LC_; nothing else of base (tokens, passwords) is kept;
//   - extra (the configured env), only when rel is Trusted: a change
//     from a fork does not get it unless it is trusted;
//   - the PREVIEW_* variables of rel (see Vars);
//   - rel.Vars (the database's, and PREVIEW_* as the caller set them).
//
// A later layer wins over an earlier one. The inherited entries keep
// base's order; the others follow, sorted by name. Environ is pure.
func Environ(base, inherit []string, rel Release, extra map[string]string) []string {
	set := map[string]string{}
	if rel.Trusted {
		for k, v := range extra {
			set[k] = v
		}
	}
	for k, v := range Vars(rel.Source, rel.URL) {
		set[k] = v
	}
	for k, v := range rel.Vars {
		set[k] = v
	}
	keep := make(map[string]bool, len(BaseEnv)+len(inherit))
	for _, n := range BaseEnv {
		keep[n] = true
	}
	for _, n := range inherit {
		keep[n] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, kv := range base {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || seen[name] || (!keep[name] && !strings.HasPrefix(name, "LC_")) {
			continue
		}
		if _, over := set[name]; over {
			continue
		}
		seen[name] = true
		out = append(out, kv)
	}
	names := make([]string, 0, len(set))
	for k := range set {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		out = append(out, k+"="+set[k])
	}
	return out
}

// KeySource is the source a key stands for when nothing but the key is
// known (previewd db, run from a pipeline): production, pull request N for
// pr-N, or else a branch environment.
func KeySource(key string) Source {
	switch {
	case key == ProductionKey:
		return Source{Key: key, Kind: KindProduction}
	case prKeyRE.MatchString(key):
		if n, err := strconv.Atoi(strings.TrimPrefix(key, "pr-")); err == nil && n > 0 {
			return Source{Key: key, Kind: KindPullRequest, Number: n}
		}
	}
	return Source{Key: key, Kind: KindBranch}
}
