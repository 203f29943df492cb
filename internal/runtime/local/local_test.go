package local

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
	"github.com/previewd/previewd/internal/testsvc"
)

// gitRepo makes a repository with one commit on main and returns its path
// and the commit.
func gitRepo(t testing.TB) (dir, sha string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testsvc.SkipUnlessCI(t, "no git: %v", err)
	}
	dir = t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q", "--initial-branch=main", ".")
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("add", "-A")
	run("commit", "-q", "-m", "x")
	return dir, run("rev-parse", "HEAD")
}

func newRuntime(t testing.TB, o Options) (*Runtime, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "previewd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	r, err := New(o, st)
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

// TestPrepareHungRemote: fetching from a remote that accepts the
// connection and never answers fails within the step timeout and frees the
// fetch lock, instead of holding every environment's rollout for ever.
func TestPrepareHungRemote(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testsvc.SkipUnlessCI(t, "no git: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // answer nothing
		}
	}()
	defer func() {
		for {
			select {
			case c := <-held:
				c.Close()
			default:
				return
			}
		}
	}()
	repo, sha := gitRepo(t)
	r, _ := newRuntime(t, Options{StepTimeout: time.Second})
	rel := &env.Release{Source: env.Source{Key: "feat", Kind: env.KindBranch, Branch: "feat", SHA: strings.Repeat("a", 40),
		Repo: "http://" + ln.Addr().String() + "/repo.git", Ref: "refs/heads/feat"}}
	done := make(chan error, 1)
	go func() { done <- r.Prepare(context.Background(), rel) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Prepare from a hung remote succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Prepare from a hung remote did not return within 20s (step timeout 1s)")
	}
	// The object cache is free: another environment's checkout goes on.
	other := &env.Release{Source: env.Source{Key: "other", Kind: env.KindBranch, Branch: "main", SHA: sha, Repo: repo, Ref: "refs/heads/main"}}
	go func() { done <- r.Prepare(context.Background(), other) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the object cache is still held after the hung fetch returned")
	}
}

// TestDeleteForgetsCachedRef: teardown removes the environment's ref from
// the shared object cache (so its commits can be pruned), its work dir and
// its inventory, and leaves other environments' refs alone.
func TestDeleteForgetsCachedRef(t *testing.T) {
	repo, sha := gitRepo(t)
	r, st := newRuntime(t, Options{})
	ctx := context.Background()
	rel := &env.Release{Source: env.Source{Key: "feat", Kind: env.KindBranch, Branch: "main", SHA: sha, Repo: repo, Ref: "refs/heads/main"}}
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(r.o.Dir, "cache.git")
	if out, err := exec.Command("git", "-C", cache, "update-ref", "refs/previewd/other", sha).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	refs := func() string {
		out, _ := exec.Command("git", "-C", cache, "for-each-ref", "--format=%(refname)", "refs/previewd/").Output()
		return strings.TrimSpace(string(out))
	}
	if got := refs(); got != "refs/previewd/feat\nrefs/previewd/other" {
		t.Fatalf("refs before teardown: %q", got)
	}
	items, err := st.Items(ctx, "feat")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "feat", items); err != nil {
		t.Fatal(err)
	}
	if got := refs(); got != "refs/previewd/other" {
		t.Errorf("refs after teardown of feat: %q, want only refs/previewd/other", got)
	}
	if left, _ := st.Items(ctx, "feat"); len(left) != 0 {
		t.Errorf("feat's inventory after teardown: %+v", left)
	}
	if _, err := os.Stat(r.envDir("feat")); !os.IsNotExist(err) {
		t.Errorf("feat's directory after teardown: %v", err)
	}
	// Idempotent: a second teardown finds nothing and is no error.
	if err := r.Delete(ctx, "feat", nil); err != nil {
		t.Errorf("second teardown: %v", err)
	}
}

// TestStepLeavesNothingRunning: a build that starts something in the
// background does not leave it running once the build is over; nothing
// would ever stop it (it is in no inventory).
func TestStepLeavesNothingRunning(t *testing.T) {
	repo, sha := gitRepo(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	r, _ := newRuntime(t, Options{Build: "sleep 300 & echo $! > '" + pidFile + "'"})
	rel := &env.Release{Source: env.Source{Key: "feat", Kind: env.KindBranch, Branch: "main", SHA: sha, Repo: repo, Ref: "refs/heads/main"}}
	if err := r.Prepare(context.Background(), rel); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(20 * time.Second)
	for startTime(pid) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the build's background process %d still runs after the build", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLogs: an environment that has written nothing has no logs (ErrNoLogs);
// one whose build ran shows its output.
func TestLogs(t *testing.T) {
	repo, sha := gitRepo(t)
	r, _ := newRuntime(t, Options{Build: "echo building the widget"})
	ctx := context.Background()
	if _, err := r.Logs(ctx, "feat", 10); !errors.Is(err, runtime.ErrNoLogs) {
		t.Errorf("logs before anything ran: %v, want ErrNoLogs", err)
	}
	rel := &env.Release{Source: env.Source{Key: "feat", Kind: env.KindBranch, Branch: "main", SHA: sha, Repo: repo, Ref: "refs/heads/main"}}
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	got, err := r.Logs(ctx, "feat", 10)
	if err != nil || !strings.Contains(got, "building the widget") {
		t.Errorf("logs after the build: %q, %v", got, err)
	}
}
