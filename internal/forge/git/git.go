// Package git is the forge that turns the branches of any git repository (a
// local path or a remote URL) into environments: the production branch
// becomes "production" and every other branch gets a key derived from its
// name. It lists them with internal/git, which runs git with argument
// lists, never through a shell, and never with a URL or a branch name where
// an option could go.
package git

import (
	"context"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/forge"
	"github.com/previewd/previewd/internal/git"
)

// Source lists a repository's branches.
type Source struct {
	url        string
	production string
	include    []string
	exclude    []string
	timeout    time.Duration
}

// Options configure a Source.
type Options struct {
	// URL is the repository: a local path or a remote URL.
	URL string
	// ProductionBranch becomes the production environment.
	ProductionBranch string
	// Branches and IgnoreBranches are globs that filter branches.
	Branches, IgnoreBranches []string
	// Timeout bounds one listing, so a remote that accepts the connection
	// and never answers is reported as unreachable instead of stopping
	// every later poll. Default DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout bounds one listing unless Options.Timeout says otherwise.
const DefaultTimeout = time.Minute

// New returns a Source for the repository.
func New(o Options) *Source {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return &Source{url: o.URL, production: o.ProductionBranch, include: o.Branches, exclude: o.IgnoreBranches, timeout: o.Timeout}
}

// List implements the reconciler's source: it runs git ls-remote and
// returns one env.Source per branch that should have an environment.
func (s *Source) List(ctx context.Context) ([]env.Source, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	heads, err := git.LsRemote(ctx, s.url)
	if err != nil {
		return nil, err
	}
	out := make([]env.Source, 0, len(heads))
	prodSHA := ""
	for _, h := range heads {
		if h.Branch == s.production {
			prodSHA = h.SHA
		}
	}
	for _, h := range heads {
		src := env.Source{Branch: h.Branch, SHA: h.SHA, Repo: s.url, Ref: "refs/heads/" + h.Branch, Trusted: true}
		switch {
		case h.Branch == s.production:
			src.Key, src.Kind = env.ProductionKey, env.KindProduction
		case forge.Included(s.include, s.exclude, h.Branch):
			src.Key, src.Kind = env.BranchKey(h.Branch), env.KindBranch
			// A branch is compared with the production branch (path
			// filters).
			if prodSHA != "" {
				src.Base, src.BaseSHA = s.production, prodSHA
			}
		default:
			continue
		}
		out = append(out, src)
	}
	return out, nil
}
