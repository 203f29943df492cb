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
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/forge"
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

// waitDelay is how long git's helpers may hold its output after git is
// killed.
const waitDelay = 2 * time.Second

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
	// When ctx ends, git is killed, but its helpers (git-remote-http, ssh)
	// keep our output pipes open: stop waiting for them after a moment,
	// or a hung remote would hang the caller for ever.
	cmd.WaitDelay = waitDelay
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		if ctx.Err() != nil {
			msg += " (" + ctx.Err().Error() + ")"
		}
		return out, fmt.Errorf("git %s: %s", args[0], msg)
	}
	return out, nil
}
