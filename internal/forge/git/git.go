// Package git is the forge that turns the branches of any git repository (a
// local path or a remote URL) into environments: the production branch
// becomes "production" and every other branch gets a key derived from its
// name. git runs as a subprocess with argument lists, never through a
// shell, and never with a branch name where an option could go.
package git

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/forge"
)

// Source lists a repository's branches.
type Source struct {
	url        string
	production string
	include    []string
	exclude    []string
}

// Options configure a Source.
type Options struct {
	// URL is the repository: a local path or a remote URL.
	URL string
	// ProductionBranch becomes the production environment.
	ProductionBranch string
	// Branches and IgnoreBranches are globs that filter branches.
	Branches, IgnoreBranches []string
}

// New returns a Source for the repository.
func New(o Options) *Source {
	return &Source{url: o.URL, production: o.ProductionBranch, include: o.Branches, exclude: o.IgnoreBranches}
}

// List implements the reconciler's source: it runs git ls-remote and
// returns one env.Source per branch that should have an environment.
func (s *Source) List(ctx context.Context) ([]env.Source, error) {
	heads, err := LsRemote(ctx, s.url)
	if err != nil {
		return nil, err
	}
	out := make([]env.Source, 0, len(heads))
	for _, h := range heads {
		src := env.Source{Branch: h.Branch, SHA: h.SHA, Repo: s.url, Ref: "refs/heads/" + h.Branch, Trusted: true}
		switch {
		case h.Branch == s.production:
			src.Key, src.Kind = env.ProductionKey, env.KindProduction
		case forge.Included(s.include, s.exclude, h.Branch):
			src.Key, src.Kind = env.BranchKey(h.Branch), env.KindBranch
		default:
			continue
		}
		out = append(out, src)
	}
	return out, nil
}

// Head is one branch and the commit it points at.
type Head struct {
	Branch string
	SHA    string
}

// LsRemote lists the branches of repo. The URL follows "--", so it can
// never be taken as an option.
func LsRemote(ctx context.Context, repo string) ([]Head, error) {
	out, err := Run(ctx, "", "ls-remote", "--heads", "--", repo)
	if err != nil {
		return nil, err
	}
	var heads []Head
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		sha, ref, ok := strings.Cut(sc.Text(), "\t")
		if !ok || !strings.HasPrefix(ref, "refs/heads/") || !isSHA(sha) {
			continue
		}
		heads = append(heads, Head{Branch: strings.TrimPrefix(ref, "refs/heads/"), SHA: sha})
	}
	return heads, sc.Err()
}

func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Run runs git with args in dir and returns its standard output. Its
// error carries git's standard error. It never prompts for credentials.
func Run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	return RunEnv(ctx, dir, nil, args...)
}

// RunEnv is Run with extra environment variables (e.g. credentials given
// as GIT_CONFIG_* settings, which keeps them off the command line).
func RunEnv(ctx context.Context, dir string, extra []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=true", "LC_ALL=C"), extra...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return out, fmt.Errorf("git %s: %s", args[0], msg)
	}
	return out, nil
}
