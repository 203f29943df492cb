package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/git"
)

// buildSpec returns rel's build command, caches and outputs: its commit's
// spec's (the repository's file over the config) where it sets them, else
// the options'.
func (r *Runtime) buildSpec(rel *env.Release) (string, []CacheSpec, []string) {
	build, caches, outputs := r.o.Build, r.o.Caching.Caches, r.o.Caching.Outputs
	if rel.Spec == nil {
		return build, caches, outputs
	}
	build = rel.Spec.Build
	if len(rel.Spec.Caches) > 0 {
		caches = nil
		for _, c := range rel.Spec.Caches {
			caches = append(caches, CacheSpec{Path: c.Path, Key: c.Key, Run: c.Run})
		}
	}
	if len(rel.Spec.Outputs) > 0 {
		outputs = rel.Spec.Outputs
	}
	return build, caches, outputs
}

// build makes the checkout at dir ready to run: it puts each dependency
// cache in place (useCache), then builds, or, when Caching.Outputs are
// declared and a build of the same inputs is kept, restores its outputs
// instead. The inputs of a build are the commit's tree, the build
// command, the outputs, the caches' entries and whether the release is
// trusted; its variables (PREVIEW_BRANCH, the URL) are not, so a build
// that bakes those in must not declare outputs. Without outputs previewd
// cannot tell what a build made, and every environment builds.
func (r *Runtime) build(ctx context.Context, rel *env.Release, dir string) error {
	build, caches, outputList := r.buildSpec(rel)
	var ids []string
	for _, c := range caches {
		id, err := r.useCache(ctx, rel, dir, c)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if len(caches) > 0 || (build != "" && len(outputList) > 0) {
		defer r.evictCaches()
	}
	if build == "" {
		return nil
	}
	if len(outputList) == 0 {
		return r.step(ctx, "build", build, dir, rel)
	}
	out, err := git.Run(ctx, r.cache.Dir(), "rev-parse", "--verify", "--end-of-options", rel.SHA+"^{tree}")
	if err != nil {
		return fmt.Errorf("reading the tree of %s: %w", env.ShortSHA(rel.SHA), err)
	}
	tree := strings.TrimSpace(string(out))
	outputs := cleanOutputs(outputList)
	id := entryID(append([]string{"build/v1", tree, build, strings.Join(outputs, "\n"), fmt.Sprint(rel.Trusted)}, ids...)...)
	store := r.buildsDir()
	// Held through the build: another environment at the same tree waits
	// for this build and reuses it rather than building too.
	lctx, cancel := context.WithTimeout(ctx, r.o.StepTimeout+time.Minute)
	defer cancel()
	lock, err := lockEntry(lctx, store, id)
	if err != nil {
		return err // not the change's fault: retried
	}
	defer lock.Close()
	entry := filepath.Join(store, id)
	if exists(entry) {
		if err := r.restoreOutputs(entry, dir, outputs); err != nil {
			return err
		}
		if err := useEntry(store, id, dir); err != nil {
			return err
		}
		r.logLine(rel, "build", fmt.Sprintf("build reused from %s (tree %s)", id[:12], env.ShortSHA(tree)))
		r.log.Info("build reused", "env", rel.Key, "sha", env.ShortSHA(rel.SHA), "entry", id[:12], "tree", env.ShortSHA(tree))
		return nil
	}
	if err := r.step(ctx, "build", build, dir, rel); err != nil {
		return err
	}
	var missing []string
	for _, o := range outputs {
		if !exists(filepath.Join(dir, o)) {
			missing = append(missing, o)
		}
	}
	if len(missing) > 0 {
		// Nothing to reuse, and no reason to fail a build that worked.
		r.logLine(rel, "build", "outputs not kept: the build made no "+strings.Join(missing, ", "))
		return nil
	}
	tmp := filepath.Join(store, ".tmp-"+id)
	if err := removeTree(tmp); err != nil {
		return fmt.Errorf("removing a half-kept build: %w", err)
	}
	// The outputs move into the entry, then come back as copies (or
	// reflinks): an app writes into its build (.next/cache), and a hard
	// link would carry those writes into the kept build.
	for _, o := range outputs {
		to := filepath.Join(tmp, "data", o)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return fmt.Errorf("keeping the build: %w", err)
		}
		if err := os.Rename(filepath.Join(dir, o), to); err != nil {
			return fmt.Errorf("keeping the build: %w", err)
		}
	}
	if err := commitEntry(store, id, entryMeta{Kind: "build", What: strings.Join(outputs, " ")}); err != nil {
		return err
	}
	if err := r.restoreOutputs(entry, dir, outputs); err != nil {
		return err
	}
	if err := useEntry(store, id, dir); err != nil {
		return err
	}
	r.log.Info("build kept", "env", rel.Key, "sha", env.ShortSHA(rel.SHA), "entry", id[:12], "tree", env.ShortSHA(tree))
	return nil
}

// restoreOutputs puts the kept outputs into the checkout, replacing what
// is there.
func (r *Runtime) restoreOutputs(entry, dir string, outputs []string) error {
	for _, o := range outputs {
		to := filepath.Join(dir, o)
		if err := removeTree(to); err != nil {
			return fmt.Errorf("clearing %s: %w", o, err)
		}
		if err := materializeCopy(filepath.Join(entry, "data", o), to); err != nil {
			return fmt.Errorf("restoring %s: %w", o, err)
		}
	}
	return nil
}

// materializeCopy copies src (a tree or a file) to dst, by reflink where
// the filesystem has them.
func materializeCopy(src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if st.Mode().IsRegular() {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := cloneFile(src, dst, st.Mode().Perm()); err == nil {
			return nil
		}
		return copyFile(src, dst, st.Mode().Perm())
	}
	return materialize(src, dst, shareCopyReflink)
}

// cleanOutputs are the declared outputs as clean relative paths, each
// once, in order.
func cleanOutputs(outputs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, o := range outputs {
		c := filepath.Clean(o)
		if c == "." || filepath.IsAbs(c) || strings.HasPrefix(c, "..") || seen[c] {
			continue
		}
		seen[c] = true
		out = append(out, c)
	}
	return out
}
