// Package gittest makes git repositories for tests: a repository in a
// temporary directory, committed to with a fixed identity, on main or on
// branches made from it.
package gittest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/testsvc"
)

// Repo is a repository a test commits to.
type Repo struct {
	t testing.TB
	// Dir is its work tree (and a path git can fetch from).
	Dir string
}

// New makes an empty repository whose first branch is main. Without git
// it skips the test, or fails it in CI.
func New(t testing.TB) *Repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testsvc.SkipUnlessCI(t, "no git: %v", err)
	}
	r := &Repo{t: t, Dir: t.TempDir()}
	r.Git("init", "-q", "--initial-branch=main", ".")
	return r
}

// Git runs git in the repository with a fixed identity and returns its
// output, trimmed; a failure fails the test.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Write writes the file name (slash-separated, below Dir) with content;
// an empty content removes it.
func (r *Repo) Write(name, content string) {
	r.t.Helper()
	p := filepath.Join(r.Dir, filepath.FromSlash(name))
	if content == "" {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			r.t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// Commit writes files (name -> content; "" removes it), commits them on
// the branch checked out, and returns the commit.
func (r *Repo) Commit(files map[string]string) string {
	r.t.Helper()
	for n, c := range files {
		r.Write(n, c)
	}
	r.Git("add", "-A")
	r.Git("commit", "-q", "--allow-empty", "-m", "x")
	return r.Git("rev-parse", "HEAD")
}

// CommitOn commits files on branch, made from main (anew) when it is not
// main, then checks main out again, and returns the commit.
func (r *Repo) CommitOn(branch string, files map[string]string) string {
	r.t.Helper()
	hasMain := r.hasMain()
	if branch != "main" || hasMain {
		r.Git("checkout", "-q", "-B", branch, "main")
	}
	sha := r.Commit(files)
	if branch != "main" || hasMain {
		r.Git("checkout", "-q", "main")
	}
	return sha
}

func (r *Repo) hasMain() bool {
	cmd := exec.Command("git", "rev-parse", "--verify", "-q", "main")
	cmd.Dir = r.Dir
	return cmd.Run() == nil
}

// At is the repository in dir, made by the test some other way.
func At(t testing.TB, dir string) *Repo { return &Repo{t: t, Dir: dir} }
