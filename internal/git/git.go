package git

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// waitDelay is how long git's helpers (git-remote-http, ssh) may hold its
// output open after git is killed.
const waitDelay = 2 * time.Second

// Run runs git with args in dir and returns its standard output. Its error
// carries git's standard error. It never prompts for credentials.
func Run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	return RunEnv(ctx, dir, nil, args...)
}

// RunEnv is Run with extra environment variables, e.g. credentials given as
// GIT_CONFIG_* settings, which keeps them off the command line.
func RunEnv(ctx context.Context, dir string, extra []string, args ...string) ([]byte, error) {
	cmd := command(ctx, dir, extra, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, runError(ctx, args[0], stderr.String(), err)
	}
	return out, nil
}

// command is git with args in dir: no prompts, C locale (so its messages
// can be read), extra added to the environment. When ctx ends git is
// killed, and its helpers' hold on the output pipes is cut after waitDelay,
// or a hung remote would hang the caller for ever.
func command(ctx context.Context, dir string, extra []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=true", "LC_ALL=C"), extra...)
	cmd.WaitDelay = waitDelay
	return cmd
}

func runError(ctx context.Context, sub, stderr string, err error) error {
	msg := strings.TrimSpace(stderr)
	if msg == "" {
		msg = err.Error()
	}
	if ctx.Err() != nil {
		msg += " (" + ctx.Err().Error() + ")"
	}
	return fmt.Errorf("git %s: %s", sub, msg)
}

// Head is one branch and the commit it points at.
type Head struct {
	Branch string
	SHA    string
}

// LsRemote lists the branches of repo (a local path or a URL). The URL
// follows "--", so it can never be taken as an option.
func LsRemote(ctx context.Context, repo string) ([]Head, error) {
	out, err := Run(ctx, "", "ls-remote", "--heads", "--", repo)
	if err != nil {
		return nil, err
	}
	var heads []Head
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		sha, ref, ok := strings.Cut(sc.Text(), "\t")
		if !ok || !strings.HasPrefix(ref, "refs/heads/") || !IsSHA(sha) {
			continue
		}
		heads = append(heads, Head{Branch: strings.TrimPrefix(ref, "refs/heads/"), SHA: sha})
	}
	return heads, sc.Err()
}

// CacheRef is the ref that keeps an environment's commit in the shared
// object cache: every runtime fetches under it and deletes it on teardown.
func CacheRef(key string) string { return "refs/previewd/" + key }

// IsSHA reports whether s is a full commit id: 40 (SHA-1) or 64 (SHA-256)
// lower-case hex digits.
func IsSHA(s string) bool {
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

// CheckSHA returns an error unless s is a full commit id.
func CheckSHA(s string) error {
	if !IsSHA(s) {
		return fmt.Errorf("%q is not a commit id: want 40 or 64 lower-case hex digits", s)
	}
	return nil
}
