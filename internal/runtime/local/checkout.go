package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/previewd/previewd/internal/env"

	"github.com/previewd/previewd/internal/git"
)

// workDir is the checkout of one SHA. Keys are DNS labels and SHAs are hex,
// so neither can leave the directory.
func (r *Runtime) workDir(key, sha string) string {
	return filepath.Join(r.envDir(key), "src-"+sha)
}

func workDirItem(dir string) env.Item { return env.Item{Kind: env.ItemWorkDir, Name: dir} }

// Prepare checks out exactly rel.SHA into its own work dir and runs the
// build there. A checkout that was built before is reused.
func (r *Runtime) Prepare(ctx context.Context, rel *env.Release) error {
	dir := r.workDir(rel.Key, rel.SHA)
	done := dir + ".ok"
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	if err := r.inv.PutItem(ctx, rel.Key, workDirItem(dir)); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing work dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("creating work dir: %w", err)
	}
	if err := r.checkout(ctx, rel, dir); err != nil {
		return err
	}
	if build := r.spec(rel).Build; build != "" {
		if err := r.step(ctx, "build", build, dir, rel); err != nil {
			return err
		}
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return fmt.Errorf("marking work dir built: %w", err)
	}
	return nil
}

// checkout fetches the SHA into the object cache shared by all
// environments and extracts its tree into dir.
func (r *Runtime) checkout(ctx context.Context, rel *env.Release, dir string) error {
	// A remote that hangs must not hold the cache, and with it every
	// other environment's rollout, for ever.
	fctx, cancel := context.WithTimeout(ctx, r.o.StepTimeout)
	err := r.cache.Fetch(fctx, rel.Repo, rel.Ref, git.CacheRef(rel.Key), rel.SHA, r.o.GitEnv)
	cancel()
	if err != nil {
		return err
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("clearing work dir: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("creating work dir: %w", err)
	}
	if err := r.cache.Archive(ctx, rel.SHA, tmp); err != nil {
		if rerr := os.RemoveAll(tmp); rerr != nil {
			r.log.Error("removing partial checkout", "env", rel.Key, "dir", tmp, "err", rerr)
		}
		return fmt.Errorf("checking out %s: %w", env.ShortSHA(rel.SHA), err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("checking out %s: %w", env.ShortSHA(rel.SHA), err)
	}
	return nil
}

// removeStaleWorkDirs removes the environment's checkouts other than keep.
func (r *Runtime) removeStaleWorkDirs(ctx context.Context, key, keep string) {
	matches, err := filepath.Glob(filepath.Join(r.envDir(key), "src-*"))
	if err != nil {
		r.log.Error("listing old work dirs", "env", key, "err", err)
		return
	}
	for _, m := range matches {
		base := m
		for _, suffix := range []string{".ok", ".tmp"} {
			if filepath.Ext(m) == suffix {
				base = m[:len(m)-len(suffix)]
			}
		}
		if base == keep {
			continue
		}
		if err := os.RemoveAll(m); err != nil {
			r.log.Error("removing old work dir", "env", key, "dir", m, "err", err)
			continue
		}
		if base == m {
			r.forget(ctx, key, workDirItem(m))
		}
	}
}
