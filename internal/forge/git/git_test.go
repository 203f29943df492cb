package git

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestListHungRemote: a remote that accepts the connection and never
// answers is reported as an error within the timeout, so polling goes on
// and the status can say the repository is unreachable. git's HTTP helper
// outlives a killed git and holds its output open; List must not wait for
// it.
func TestListHungRemote(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	src := New(Options{URL: "http://" + ln.Addr().String() + "/repo.git", ProductionBranch: "main", Timeout: time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := src.List(context.Background())
		done <- err
	}()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case c := <-accepted:
			conns = append(conns, c) // hold it open, answer nothing
			continue
		case err := <-done:
			if err == nil {
				t.Fatal("List of a hung remote succeeded")
			}
			if !strings.Contains(err.Error(), "git ls-remote") {
				t.Errorf("error %q does not name git ls-remote", err)
			}
			return
		case <-deadline:
			t.Fatal("List of a hung remote did not return within 20s (timeout 1s)")
		}
	}
}

// TestListOptionLikeURL: a repository URL that looks like an option is
// never taken as one.
func TestListOptionLikeURL(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	canary := filepath.Join(t.TempDir(), "pwned")
	src := New(Options{URL: "--upload-pack=touch " + canary, ProductionBranch: "main"})
	if _, err := src.List(context.Background()); err == nil {
		t.Error("List of an option-like URL succeeded")
	}
	if _, err := os.Stat(canary); !os.IsNotExist(err) {
		t.Fatalf("the URL was taken as an option: %v", err)
	}
}

// TestListBranches: the production branch becomes production, others get
// keys, and a hostile branch name stays data.
func TestListBranches(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q", "--initial-branch=main", ".")
	run("commit", "-q", "--allow-empty", "-m", "x")
	run("branch", "feat")
	run("branch", "x;rm${IFS}-rf")
	got, err := New(Options{URL: dir, ProductionBranch: "main"}).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]env.Source{}
	for _, s := range got {
		keys[s.Key] = s
	}
	if p := keys[env.ProductionKey]; p.Branch != "main" || p.Kind != env.KindProduction || len(p.SHA) != 40 {
		t.Errorf("production = %+v", p)
	}
	if p := keys[env.ProductionKey]; p.Base != "" || p.BaseSHA != "" {
		t.Errorf("production has a base: %+v", p)
	}
	if f := keys["feat"]; f.Branch != "feat" || f.Ref != "refs/heads/feat" || f.Base != "main" || f.BaseSHA != keys[env.ProductionKey].SHA {
		t.Errorf("feat = %+v", f)
	}
	if h := keys[env.BranchKey("x;rm${IFS}-rf")]; h.Branch != "x;rm${IFS}-rf" || env.CheckKey(h.Key) != nil {
		t.Errorf("hostile branch = %+v", h)
	}
}
