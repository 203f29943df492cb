package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Caching configures dependency caches and build reuse.
type Caching struct {
	// Caches are made, in order, before build (cache.go).
	Caches []CacheSpec
	// Outputs are what build produces, relative to the checkout; when
	// set, builds are kept and reused by tree (buildcache.go).
	Outputs []string
	// MaxAge evicts entries no checkout used for this long (default 7
	// days); MaxBytes caps their total size (default 10 GiB). An entry a
	// checkout uses is never evicted.
	MaxAge   time.Duration
	MaxBytes int64
}

// CacheSpec is one dependency cache: Run fills Path, and the result is
// kept per content of the Key files.
type CacheSpec struct {
	// Path is the directory, relative to the checkout, that Run fills.
	Path string
	// Key are files (globs allowed) relative to the checkout.
	Key []string
	// Run is a shell command run in the checkout with the build's
	// environment.
	Run string
	// Share is link (default: reflinks where the filesystem has them,
	// else hard links to read-only files), copy or symlink.
	Share string
}

func (c Caching) maxAge() time.Duration {
	if c.MaxAge <= 0 {
		return 7 * 24 * time.Hour
	}
	return c.MaxAge
}

func (c Caching) maxBytes() int64 {
	if c.MaxBytes <= 0 {
		return 10 << 30
	}
	return c.MaxBytes
}

func (r *Runtime) depsDir() string   { return filepath.Join(r.o.Dir, "caches", "deps") }
func (r *Runtime) buildsDir() string { return filepath.Join(r.o.Dir, "caches", "builds") }

// cacheStep names a cache's step in errors and the log.
func cacheStep(c CacheSpec) string { return "cache " + filepath.Clean(c.Path) }

// cacheKey is the entry of c for the checkout at dir: the hash of its
// path, run command and share method, whether the release is trusted (an
// untrusted fork's install scripts must not fill a trusted branch's
// cache), and the names and contents of its key files.
func cacheKey(c CacheSpec, dir string, trusted bool) (string, error) {
	parts := []string{"deps/v1", filepath.Clean(c.Path), c.Run, shareMethod(c.Share), fmt.Sprint(trusted)}
	for _, k := range c.Key {
		if filepath.IsAbs(k) || strings.HasPrefix(filepath.Clean(k), "..") {
			return "", fmt.Errorf("key %q is not inside the checkout", k)
		}
		matches, err := filepath.Glob(filepath.Join(dir, k))
		if err != nil {
			return "", fmt.Errorf("key %q: %w", k, err)
		}
		if len(matches) == 0 {
			return "", fmt.Errorf("key file %s is not in the checkout", k)
		}
		slices.Sort(matches)
		for _, m := range matches {
			sum, err := fileHash(m)
			if err != nil {
				return "", fmt.Errorf("key file %s: %w", k, err)
			}
			rel, _ := filepath.Rel(dir, m)
			parts = append(parts, rel, sum)
		}
	}
	return entryID(parts...), nil
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file")
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func shareMethod(s string) string {
	switch s {
	case shareCopy, shareSymlink, shareHard, shareReflink:
		return s
	}
	return shareLink
}

// useCache puts c's entry for the checkout at dir into it at c.Path,
// making the entry first if there is none: it runs c.Run in the checkout
// (with the build's environment and log), moves what it made at c.Path
// into the entry, and then shares the entry back. One environment makes
// an entry while the others that need it wait for it (the entry's lock);
// a failure is a StepError of step "cache <path>" with the log's tail, and
// fails only the environments whose key it is. It returns the entry's id.
func (r *Runtime) useCache(ctx context.Context, rel *env.Release, dir string, c CacheSpec) (string, error) {
	step := cacheStep(c)
	id, err := cacheKey(c, dir, rel.Trusted)
	if err != nil {
		return "", &env.StepError{Step: step, Err: err}
	}
	store := r.depsDir()
	lctx, cancel := context.WithTimeout(ctx, r.o.StepTimeout+time.Minute)
	defer cancel()
	lock, err := lockEntry(lctx, store, id)
	if err != nil {
		return "", err // not the change's fault: retried
	}
	defer lock.Close()
	entry := filepath.Join(store, id)
	target := filepath.Join(dir, filepath.Clean(c.Path))
	method := shareMethod(c.Share)
	if !exists(entry) {
		tmp := filepath.Join(store, ".tmp-"+id)
		if err := removeTree(tmp); err != nil {
			return "", fmt.Errorf("removing a half-made cache entry: %w", err)
		}
		if err := r.step(ctx, step, c.Run, dir, rel); err != nil {
			return "", err
		}
		if !exists(target) {
			return "", &env.StepError{Step: step, Err: fmt.Errorf("%q made no %s", c.Run, c.Path), Tail: tail(r.logPath(rel.Key), 20)}
		}
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return "", fmt.Errorf("making cache entry: %w", err)
		}
		if err := os.Rename(target, filepath.Join(tmp, "data")); err != nil {
			return "", fmt.Errorf("making cache entry: %w", err)
		}
		if method == shareLink || method == shareHard {
			if err := readOnly(filepath.Join(tmp, "data")); err != nil {
				return "", fmt.Errorf("making cache entry: %w", err)
			}
		}
		if err := commitEntry(store, id, entryMeta{Kind: "deps", What: filepath.Clean(c.Path)}); err != nil {
			return "", err
		}
		r.log.Info("cache entry made", "env", rel.Key, "path", c.Path, "entry", id[:12])
	} else {
		r.logLine(rel, "cache "+filepath.Clean(c.Path), "entry "+id[:12]+" reused")
	}
	if err := useEntry(store, id, dir); err != nil {
		return "", err
	}
	if err := removeTree(target); err != nil {
		return "", fmt.Errorf("clearing %s: %w", c.Path, err)
	}
	if err := materialize(filepath.Join(entry, "data"), target, method); err != nil {
		return "", fmt.Errorf("sharing cache entry %s into the checkout: %w", id[:12], err)
	}
	return id, nil
}

// logLine writes one header line to the environment's log.
func (r *Runtime) logLine(rel *env.Release, step, msg string) {
	logf, err := r.openLog(rel.Key)
	if err != nil {
		r.log.Error("writing to the log", "env", rel.Key, "err", err)
		return
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==> %s %s at %s: %s\n", step, env.ShortSHA(rel.SHA), time.Now().UTC().Format(time.RFC3339), msg)
}

// evictCaches removes the entries (caches and kept builds) that
// Caching's age and size allow no more, logging what it could not.
func (r *Runtime) evictCaches() {
	gone, err := evict(time.Now(), r.o.Caching.maxAge(), r.o.Caching.maxBytes(), r.depsDir(), r.buildsDir())
	for _, e := range gone {
		r.log.Info("cache entry evicted", "entry", e.ID[:12], "size", e.Size)
	}
	if err != nil {
		r.log.Error("evicting cache entries", "err", err)
	}
}
