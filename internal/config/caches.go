package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Caching is the part of runtime.local about dependency caches and build
// reuse. It is inlined in Local: its keys sit directly under
// runtime.local.
type Caching struct {
	// Caches are dependency directories built once per content of their
	// key files and shared into every environment's checkout, e.g.
	// {path: node_modules, key: [package-lock.json], run: "npm ci"}.
	// They are made before build, in the order given.
	Caches []Cache `yaml:"caches"`
	// Outputs are the paths (relative to the checkout) that build
	// produces, e.g. [bin/, .next]. When set, a successful build's outputs
	// are kept keyed by the commit's tree, the build command and the
	// caches' keys, and an environment at the same tree (another branch,
	// production) restores them instead of building. Without outputs
	// every environment builds.
	Outputs []string `yaml:"outputs"`
	// CacheMaxAge evicts cache entries and kept builds that no checkout
	// has used for this long (7d, 36h). Default 7d.
	CacheMaxAge Age `yaml:"cacheMaxAge"`
	// CacheMaxBytes caps the total size of cache entries and kept builds
	// (10GB, 500MB or a number of bytes); the least recently used that no
	// checkout uses are evicted first. Default 10GB.
	CacheMaxBytes ByteSize `yaml:"cacheMaxBytes"`
}

// Cache is one dependency cache of runtime.local.caches.
type Cache struct {
	// Path is the directory, relative to the checkout, that Run fills
	// and that is shared into each checkout, e.g. node_modules.
	Path string `yaml:"path"`
	// Key are the files (relative to the checkout; globs allowed) whose
	// contents key the entry, e.g. [package-lock.json]. A branch whose
	// key files differ gets its own entry.
	Key []string `yaml:"key"`
	// Run is the shell command, run in the checkout with the build's
	// environment, that fills Path, e.g. "npm ci".
	Run string `yaml:"run"`
	// Share is how an entry is put into a checkout: link (hard links to
	// read-only files, or copy-on-write clones where the filesystem has
	// them), copy (for apps that write into Path) or symlink (fastest;
	// the app must never write into Path). Default link.
	Share string `yaml:"share"`
}

// Age is a duration that also takes whole days: 7d.
type Age struct{ time.Duration }

// UnmarshalYAML parses 7d or a Go duration (36h).
func (a *Age) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	d, err := parseAge(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	a.Duration = d
	return nil
}

// MarshalYAML writes the age as a Go duration.
func (a Age) MarshalYAML() (any, error) { return a.String(), nil }

func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not an age (want e.g. 7d, 36h)", s)
	}
	return d, nil
}

// ByteSize is a number of bytes that also takes KB, MB, GB and TB
// (powers of 1024).
type ByteSize int64

// UnmarshalYAML parses 10GB, 500MB or a plain number.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := parseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

func parseByteSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (want e.g. 10GB, 500MB)", s)
	}
	return n * mult, nil
}

// Cache sharing modes (Cache.Share).
const (
	ShareLink    = "link"
	ShareCopy    = "copy"
	ShareSymlink = "symlink"
)

func (c *Caching) setDefaults() {
	if c.CacheMaxAge.Duration == 0 {
		c.CacheMaxAge.Duration = 7 * 24 * time.Hour
	}
	if c.CacheMaxBytes == 0 {
		c.CacheMaxBytes = 10 << 30
	}
	for i := range c.Caches {
		if c.Caches[i].Share == "" {
			c.Caches[i].Share = ShareLink
		}
	}
}

func (c *Caching) validate(bad func(string, string, ...any)) {
	seen := map[string]string{}
	for i, e := range c.Caches {
		field := "runtime.local.caches[" + strconv.Itoa(i) + "]"
		if err := checkRelPath(e.Path); err != nil {
			bad(field+".path", "%v", err)
		} else if other, dup := seen[filepath.Clean(e.Path)]; dup {
			bad(field+".path", "%q is already the path of %s", e.Path, other)
		} else {
			seen[filepath.Clean(e.Path)] = field
		}
		if len(e.Key) == 0 {
			bad(field+".key", "required: the files whose contents key the cache, e.g. [package-lock.json]")
		}
		for j, k := range e.Key {
			if err := checkRelPath(k); err != nil {
				bad(field+".key["+strconv.Itoa(j)+"]", "%v", err)
			} else if _, err := filepath.Match(k, ""); err != nil {
				bad(field+".key["+strconv.Itoa(j)+"]", "%q is not a valid glob: %v", k, err)
			}
		}
		if strings.TrimSpace(e.Run) == "" {
			bad(field+".run", "required: the command that fills %s, e.g. \"npm ci\"", e.Path)
		}
		switch e.Share {
		case ShareLink, ShareCopy, ShareSymlink:
		default:
			bad(field+".share", "unknown value %q; want %s", e.Share, orList([]string{ShareLink, ShareCopy, ShareSymlink}))
		}
	}
	for i, o := range c.Outputs {
		if err := checkRelPath(o); err != nil {
			bad("runtime.local.outputs["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
	if c.CacheMaxAge.Duration < 0 {
		bad("runtime.local.cacheMaxAge", "must not be negative")
	}
	if c.CacheMaxBytes < 0 {
		bad("runtime.local.cacheMaxBytes", "must not be negative")
	}
}

// checkRelPath accepts a path inside the checkout: relative, not the
// checkout itself, not climbing out of it.
func checkRelPath(p string) error {
	c := filepath.Clean(p)
	switch {
	case strings.TrimSpace(p) == "":
		return fmt.Errorf("required: a path relative to the checkout")
	case filepath.IsAbs(p):
		return fmt.Errorf("%q must be relative to the checkout", p)
	case c == "." || c == ".." || strings.HasPrefix(c, "../"):
		return fmt.Errorf("%q is not a path inside the checkout", p)
	case c == ".git":
		return fmt.Errorf("%q is not a path previewd may replace", p)
	}
	return nil
}
