package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"text/template"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/tmpl"
)

// maxParsed bounds the parsed templates kept per (commit, path).
const maxParsed = 64

// templates are the parsed manifests and migrate Job template one release
// renders with.
type templates struct {
	manifests *Manifests
	migrate   *template.Template // nil: no Job template
}

// parsedKey names what was parsed: a path at a commit.
type parsedKey struct{ sha, path string }

// parsedCache keeps the templates parsed from commits, so a reconcile of
// an unchanged SHA costs no git call. The oldest entry goes first.
type parsedCache struct {
	mu    sync.Mutex
	byKey map[parsedKey]any // *Manifests or *template.Template
	order []parsedKey
}

func (c *parsedCache) get(k parsedKey) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.byKey[k]
	return v, ok
}

func (c *parsedCache) put(k parsedKey, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil {
		c.byKey = map[parsedKey]any{}
	}
	if _, ok := c.byKey[k]; !ok {
		c.order = append(c.order, k)
	}
	c.byKey[k] = v
	for len(c.order) > maxParsed {
		delete(c.byKey, c.order[0])
		c.order = c.order[1:]
	}
}

// inRepo reports whether p names a path inside the app's repository.
func (r *Runtime) inRepo(p string) bool { return r.o.InRepo && p != "" && !filepath.IsAbs(p) }

// templatesFor returns the templates of a release: those of a path inside
// the repository come from the commit the release's manifests are read
// at (its own, or production's for an untrusted change), parsed once per
// commit; those of a directory of this machine are read again now. An
// error in the templates themselves is an *env.StepError (terminal for
// the SHA); one reaching the repository is returned for a retry.
func (r *Runtime) templatesFor(ctx context.Context, rel *env.Release) (templates, error) {
	var t templates
	dir := r.o.Manifests
	if rel.Spec != nil && rel.Spec.Manifests != "" {
		// The commit's own .previewd.yaml chose them (a path inside the
		// repository).
		dir = rel.Spec.Manifests
	}
	manifests := r.o.ApplyManifests && dir != ""
	var src env.Source
	if (manifests && r.inRepo(dir)) || r.inRepo(r.o.MigrateJob) {
		var err error
		if src, err = r.manifestSource(ctx, rel.Source); err != nil {
			return t, err
		}
	}
	t.manifests = &Manifests{}
	switch {
	case !manifests:
	case r.inRepo(dir):
		v, err := r.fromCommit(ctx, src, dir, dir, func(files map[string][]byte, prefix string) (any, error) {
			return parseManifests(files, prefix)
		})
		if err != nil {
			return t, err
		}
		t.manifests = v.(*Manifests)
	default:
		m, err := LoadManifests(dir)
		if err != nil {
			return t, renderError(err)
		}
		t.manifests = m
	}
	switch {
	case r.o.MigrateJob == "":
	case r.inRepo(r.o.MigrateJob):
		dir, file := path.Split(path.Clean(filepath.ToSlash(r.o.MigrateJob)))
		v, err := r.fromCommit(ctx, src, r.o.MigrateJob, dir, func(files map[string][]byte, prefix string) (any, error) {
			raw, ok := files[file]
			if !ok {
				return nil, fmt.Errorf("%s is not a file at %s", path.Join(prefix, file), env.ShortSHA(src.SHA))
			}
			return tmpl.Parse(path.Join(prefix, file), string(raw))
		})
		if err != nil {
			return t, err
		}
		t.migrate = v.(*template.Template)
	default:
		job, err := loadJob(r.o.MigrateJob)
		if err != nil {
			return t, renderError(err)
		}
		t.migrate = job
	}
	return t, nil
}

// loadJob reads and parses the migrate Job template of a file of this
// machine.
func loadJob(file string) (*template.Template, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading migrate job: %w", err)
	}
	return tmpl.Parse(filepath.Base(file), string(raw))
}

func renderError(err error) error { return &env.StepError{Step: "render", Err: err} }

// manifestSource is the source whose commit a release's manifests are
// read at: its own, unless it is an untrusted change (a fork), which gets
// production's, so a fork can never choose what previewd applies with its
// credentials.
func (r *Runtime) manifestSource(ctx context.Context, src env.Source) (env.Source, error) {
	if src.Trusted || src.Production() {
		return src, nil
	}
	if r.o.Production == nil {
		return src, renderError(errors.New("an untrusted change renders production's manifests, and production's source is unknown"))
	}
	p, err := r.o.Production(ctx)
	if err != nil {
		return src, fmt.Errorf("reading production's source for an untrusted change's manifests: %w", err)
	}
	if p.Key == "" {
		p.Key = env.ProductionKey
	}
	return p, nil
}

// fromCommit returns what parse makes of the files of directory dir at
// src's commit, kept as p's, fetching the commit into the object cache on
// the first use.
func (r *Runtime) fromCommit(ctx context.Context, src env.Source, p, dir string, parse func(files map[string][]byte, prefix string) (any, error)) (any, error) {
	k := parsedKey{sha: src.SHA, path: p}
	if v, ok := r.parsed.get(k); ok {
		return v, nil
	}
	d := path.Clean(filepath.ToSlash(dir))
	if r.o.Cache == nil {
		return nil, renderError(errors.New("reading manifests from the repository needs an object cache"))
	}
	if src.Repo == "" || src.Ref == "" {
		return nil, renderError(fmt.Errorf("%s is a path in the repository, but %s names no repository to fetch", p, src.Key))
	}
	fctx, cancel := context.WithTimeout(ctx, r.o.FetchTimeout)
	err := r.o.Cache.Fetch(fctx, src.Repo, src.Ref, git.CacheRef(src.Key), src.SHA, r.o.GitEnv)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fetching manifests: %w", err)
	}
	files, err := r.o.Cache.Files(ctx, src.SHA, d)
	if errors.Is(err, git.ErrNoTree) {
		return nil, renderError(fmt.Errorf("reading manifests: %w", err))
	}
	if err != nil {
		return nil, fmt.Errorf("reading manifests: %w", err)
	}
	prefix := strings.TrimPrefix(d, "./")
	if prefix == "." {
		prefix = ""
	}
	v, err := parse(files, prefix)
	if err != nil {
		return nil, renderError(err)
	}
	r.parsed.put(k, v)
	return v, nil
}
