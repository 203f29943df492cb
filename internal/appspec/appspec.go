package appspec

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/lru"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/git"
)

// StepRepoFile names the step a bad repository file fails, in an
// env.StepError.
const StepRepoFile = "repo file"

// Options configure a Reader.
type Options struct {
	// Base is the config's app spec (config.Config.AppSpec): what a
	// commit without a .previewd.yaml gets.
	Base env.AppSpec
	// Cache is the object cache the runtimes fetch into.
	Cache *git.Cache
	// GitEnv, if set, gives git its credentials.
	GitEnv func(ctx context.Context) ([]string, error)
	// Production returns production's source: a fork's change gets the
	// spec of its commit.
	Production func(ctx context.Context) (env.Source, error)
	// FetchTimeout bounds one fetch. Default 2m.
	FetchTimeout time.Duration
}

// maxRemembered bounds the specs and file lists kept in memory.
const maxRemembered = 512

// Reader reads app specs and changed files, remembering them per commit
// (a commit's never change).
type Reader struct {
	o       Options
	specs   *lru.Cache // specKey -> env.AppSpec
	touched *lru.Cache // [2]string{from, sha} -> []string
}

// specKey names a remembered spec: a commit, and whether it was read for a
// fork (production's file) or itself.
type specKey struct {
	sha  string
	fork bool
}

// New returns a Reader.
func New(o Options) *Reader {
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 2 * time.Minute
	}
	return &Reader{o: o, specs: lru.New(maxRemembered), touched: lru.New(maxRemembered)}
}

// Spec returns the app spec of src's commit. For a change that is not
// trusted to choose (a fork), the file is read at production's head
// instead, as it was when the change's commit was first looked at. A
// commit without the file gets the config's spec. A bad file is an
// *env.StepError naming the field (terminal for the commit); an error
// reaching the repository is returned as it is, to be retried.
func (r *Reader) Spec(ctx context.Context, src env.Source) (env.AppSpec, error) {
	fork := !src.Production() && (src.Fork || !src.Trusted)
	k := specKey{sha: src.SHA, fork: fork}
	if s, ok := r.specs.Get(k); ok {
		return s.(env.AppSpec), nil
	}
	at, whose := src, ""
	if fork {
		if r.o.Production == nil {
			return env.AppSpec{}, &env.StepError{Step: StepRepoFile, Err: errors.New("a fork's change reads production's " + env.RepoFile + ", and production's source is unknown")}
		}
		p, err := r.o.Production(ctx)
		if err != nil {
			return env.AppSpec{}, fmt.Errorf("reading production's source for a fork's %s: %w", env.RepoFile, err)
		}
		if p.Key == "" {
			p.Key = env.ProductionKey
		}
		at, whose = p, "production's "
	}
	if err := r.fetch(ctx, at.Repo, at.Ref, git.CacheRef(at.Key), at.SHA); err != nil {
		return env.AppSpec{}, err
	}
	data, err := r.o.Cache.File(ctx, at.SHA, env.RepoFile)
	spec := r.o.Base
	switch {
	case errors.Is(err, git.ErrNoFile):
	case err != nil:
		if errors.Is(err, git.ErrFileTooLarge) {
			return env.AppSpec{}, &env.StepError{Step: StepRepoFile, Err: err}
		}
		return env.AppSpec{}, fmt.Errorf("reading %s: %w", env.RepoFile, err)
	default:
		from := whose + env.RepoFile + " at " + env.ShortSHA(at.SHA)
		rf, err := config.ParseRepoFile(env.RepoFile, data)
		if err != nil {
			return env.AppSpec{}, &env.StepError{Step: StepRepoFile, Err: fmt.Errorf("%s: %w", from, err)}
		}
		spec = rf.Apply(r.o.Base, from)
	}
	r.specs.Add(k, spec)
	return spec, nil
}

// Touched returns the files src's commit changes: since commit since (the
// one deployed: what this push brings) when it is set and in the cache,
// else since its merge base with src's base (what the whole change
// brings). Nil when that cannot be told (production, no base known, no
// common history): nil filters nothing.
func (r *Reader) Touched(ctx context.Context, src env.Source, since string) ([]string, error) {
	if src.Production() || !git.IsSHA(src.SHA) {
		return nil, nil
	}
	if err := r.fetch(ctx, src.Repo, src.Ref, git.CacheRef(src.Key), src.SHA); err != nil {
		return nil, err
	}
	from := ""
	switch {
	case git.IsSHA(since) && r.o.Cache.Has(ctx, since):
		from = since
	case src.Base != "" && git.IsSHA(src.BaseSHA):
		from = src.BaseSHA
	default:
		return nil, nil
	}
	k := [2]string{from, src.SHA}
	if f, ok := r.touched.Get(k); ok {
		return f.([]string), nil
	}
	if from == src.BaseSHA {
		// The head was fetched: a base that cannot be (its branch
		// deleted) only means nothing can be told.
		if err := r.fetch(ctx, src.Repo, "refs/heads/"+src.Base, BaseRef(src.Base), src.BaseSHA); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			return nil, nil
		}
	}
	files, err := r.o.Cache.Changed(ctx, from, src.SHA)
	if err != nil {
		return nil, fmt.Errorf("listing the files %s changes: %w", env.ShortSHA(src.SHA), err)
	}
	r.touched.Add(k, files)
	return files, nil
}

// BaseRef is the ref that keeps a base branch's commit in the object
// cache, one per base branch, moved on every fetch.
func BaseRef(branch string) string { return "refs/previewd-base/" + branch }

func (r *Reader) fetch(ctx context.Context, repo, ref, into, sha string) error {
	if r.o.Cache == nil {
		return errors.New("reading the repository needs an object cache")
	}
	if repo == "" || ref == "" {
		return &env.StepError{Step: StepRepoFile, Err: fmt.Errorf("the change names no repository to read %s from", env.RepoFile)}
	}
	fctx, cancel := context.WithTimeout(ctx, r.o.FetchTimeout)
	defer cancel()
	if err := r.o.Cache.Fetch(fctx, repo, ref, into, sha, r.o.GitEnv); err != nil {
		return fmt.Errorf("fetching %s: %w", env.ShortSHA(sha), err)
	}
	return nil
}
