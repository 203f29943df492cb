package daemon

import (
	"path/filepath"

	"github.com/previewd/previewd/internal/appspec"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/reconcile"
)

// objectCache is the one git object cache of the data dir: the runtimes
// fetch each environment's commit into it, and each commit's app spec and
// changed files are read from it.
func objectCache(cfg *config.Config) *git.Cache {
	return git.NewCache(filepath.Join(cfg.DataDir, "cache.git"))
}

// openSpecs returns the reader of each commit's app spec: the config's
// app-shaped settings with the repository's .previewd.yaml over them.
func (d *Daemon) openSpecs(src reconcile.Source) *appspec.Reader {
	return appspec.New(appspec.Options{
		Base:       d.cfg.AppSpec(),
		Cache:      d.cache,
		GitEnv:     d.gh.gitEnv,
		Production: production(src),
	})
}
