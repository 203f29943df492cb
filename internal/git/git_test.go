package git

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/gittest"
	"github.com/previewd/previewd/internal/testsvc"
)

// repo makes a repository with one commit on main holding hello.txt and
// returns its path and the commit.
func repo(t *testing.T) (dir, sha string) {
	t.Helper()
	r := gittest.New(t)
	if err := os.Symlink("hello.txt", filepath.Join(r.Dir, "link")); err != nil {
		t.Fatal(err)
	}
	return r.Dir, r.Commit(map[string]string{"hello.txt": "hello\n"})
}

func TestIsSHA(t *testing.T) {
	tests := map[string]struct {
		s  string
		ok bool
	}{
		"sha1":       {strings.Repeat("a1", 20), true},
		"sha256":     {strings.Repeat("0f", 32), true},
		"short":      {"abc1234", false},
		"upper":      {strings.Repeat("A1", 20), false},
		"option":     {"--upload-pack=x" + strings.Repeat("a", 25), false},
		"revision":   {"HEAD~1" + strings.Repeat("a", 34), false},
		"empty":      {"", false},
		"not hex 41": {strings.Repeat("a", 41), false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := IsSHA(tt.s); got != tt.ok {
				t.Errorf("IsSHA(%q) = %v, want %v", tt.s, got, tt.ok)
			}
			if err := CheckSHA(tt.s); (err == nil) != tt.ok {
				t.Errorf("CheckSHA(%q) = %v", tt.s, err)
			}
		})
	}
}

// TestLsRemote lists a repository's branches with their commits.
func TestLsRemote(t *testing.T) {
	dir, sha := repo(t)
	heads, err := LsRemote(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 1 || heads[0] != (Head{Branch: "main", SHA: sha}) {
		t.Errorf("heads = %+v", heads)
	}
}

// TestOptionLikeArguments: a URL, a ref or a SHA that looks like an option
// is never taken as one.
func TestOptionLikeArguments(t *testing.T) {
	dir, sha := repo(t)
	canary := filepath.Join(t.TempDir(), "pwned")
	evil := "--upload-pack=touch " + canary
	ctx := context.Background()
	if _, err := LsRemote(ctx, evil); err == nil {
		t.Error("ls-remote of an option-like URL succeeded")
	}
	c := NewCache(filepath.Join(t.TempDir(), "cache.git"))
	if err := c.Fetch(ctx, evil, "refs/heads/main", "refs/previewd/x", sha, nil); err == nil {
		t.Error("fetch from an option-like URL succeeded")
	}
	if err := c.Fetch(ctx, dir, evil, "refs/previewd/x", sha, nil); err == nil {
		t.Error("fetch of an option-like ref succeeded")
	}
	if err := c.Fetch(ctx, dir, "refs/heads/main", "refs/previewd/x", evil, nil); err == nil {
		t.Error("fetch of an option-like SHA succeeded")
	}
	if err := c.Archive(ctx, evil, t.TempDir()); err == nil {
		t.Error("archive of an option-like SHA succeeded")
	}
	if _, err := os.Stat(canary); !os.IsNotExist(err) {
		t.Fatalf("an argument was taken as an option: %v", err)
	}
}

// TestFetchArchive fetches a commit into the cache, extracts its tree, and
// asks for credentials only when it has to fetch.
func TestFetchArchive(t *testing.T) {
	dir, sha := repo(t)
	ctx := context.Background()
	c := NewCache(filepath.Join(t.TempDir(), "cache.git"))
	if c.Has(ctx, sha) {
		t.Fatal("an empty cache has the commit")
	}
	asked := 0
	creds := func(context.Context) ([]string, error) { asked++; return nil, nil }
	if err := c.Fetch(ctx, dir, "refs/heads/main", "refs/previewd/feat", sha, creds); err != nil {
		t.Fatal(err)
	}
	if !c.Has(ctx, sha) || asked != 1 {
		t.Fatalf("after fetch: has %v, credentials asked %d times", c.Has(ctx, sha), asked)
	}
	broken := func(context.Context) ([]string, error) { return nil, errors.New("no token") }
	if err := c.Fetch(ctx, dir, "refs/heads/main", "refs/previewd/feat", sha, broken); err != nil {
		t.Errorf("a second fetch of a cached commit asked for credentials: %v", err)
	}
	out := t.TempDir()
	if err := c.Archive(ctx, sha, out); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "hello.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("hello.txt = %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(out, "link")); err != nil || l != "hello.txt" {
		t.Errorf("link = %q, %v", l, err)
	}
	if err := c.DeleteRef(ctx, "refs/previewd/feat"); err != nil {
		t.Fatal(err)
	}
	if refs, _ := Run(ctx, c.Dir(), "for-each-ref", "refs/previewd/"); len(refs) != 0 {
		t.Errorf("refs after DeleteRef: %s", refs)
	}
	if err := c.DeleteRef(ctx, "refs/previewd/feat"); err != nil {
		t.Errorf("deleting a missing ref: %v", err)
	}
}

// TestFetchHungRemote: a remote that accepts the connection and never
// answers fails the fetch once its context ends, within moments, and the
// cache is free for the next fetch. git's HTTP helper outlives a killed git
// and holds its output open; the fetch must not wait for it.
func TestFetchHungRemote(t *testing.T) {
	dir, sha := repo(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			held <- conn // answer nothing
		}
	}()
	defer func() {
		for {
			select {
			case conn := <-held:
				conn.Close()
			default:
				return
			}
		}
	}()
	c := NewCache(filepath.Join(t.TempDir(), "cache.git"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err = c.Fetch(ctx, "http://"+ln.Addr().String()+"/repo.git", "refs/heads/main", "refs/previewd/x", sha, nil)
	if err == nil || !strings.Contains(err.Error(), "git fetch") {
		t.Fatalf("fetch from a hung remote: %v", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("fetch from a hung remote took %s (context 1s)", took)
	}
	done := make(chan error, 1)
	go func() { done <- c.Fetch(context.Background(), dir, "refs/heads/main", "refs/previewd/x", sha, nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the cache is still held after the hung fetch returned")
	}
}

// TestCredentialsInEnvironment: what RunEnv is given reaches git as
// configuration, without being an argument.
func TestCredentialsInEnvironment(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testsvc.SkipUnlessCI(t, "no git")
	}
	extra := []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Basic czNjcmV0"}
	out, err := RunEnv(context.Background(), t.TempDir(), extra, "config", "--get", "http.extraHeader")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "Authorization: Basic czNjcmV0" {
		t.Errorf("git sees http.extraHeader = %q", got)
	}
}

// TestUntarRefuses: archive entries that would leave the work dir, by
// their name or through a symbolic link, are refused and write nothing
// outside.
func TestUntarRefuses(t *testing.T) {
	type entry struct {
		name, link string
	}
	tests := map[string][]entry{
		"parent":          {{name: "../escaped"}},
		"nested parent":   {{name: "a/../../escaped"}},
		"absolute":        {{name: "/escaped"}},
		"through a link":  {{name: "l", link: "OUTSIDE"}, {name: "l/escaped"}},
		"through a link2": {{name: "d/l", link: "OUTSIDE"}, {name: "d/l/x/escaped"}},
	}
	for name, entries := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			outside := filepath.Join(root, "outside")
			dir := filepath.Join(root, "work")
			for _, d := range []string{outside, dir} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range entries {
				if e.link != "" {
					tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeSymlink, Linkname: strings.ReplaceAll(e.link, "OUTSIDE", outside)})
					continue
				}
				tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
				tw.Write([]byte("x"))
			}
			tw.Close()
			if err := untar(&buf, dir); err == nil {
				t.Error("untar accepted the archive")
			}
			for _, p := range []string{filepath.Join(root, "escaped"), filepath.Join(outside, "escaped"), filepath.Join(outside, "x", "escaped"), "/escaped"} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s was written: %v", p, err)
				}
			}
		})
	}
}

func TestFiles(t *testing.T) {
	src, sha := repo(t)
	c := NewCache(filepath.Join(t.TempDir(), "cache.git"))
	ctx := context.Background()
	if err := c.Fetch(ctx, src, "refs/heads/main", "refs/previewd/t", sha, nil); err != nil {
		t.Fatal(err)
	}
	files, err := c.Files(ctx, sha, ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || string(files["hello.txt"]) != "hello\n" {
		t.Fatalf("files = %q, want only hello.txt (the symbolic link left out)", files)
	}
	for _, dir := range []string{"nope", "hello.txt"} {
		if _, err := c.Files(ctx, sha, dir); !errors.Is(err, ErrNoTree) {
			t.Errorf("Files(%q) = %v, want ErrNoTree", dir, err)
		}
	}
	if _, err := c.Files(ctx, sha, "../x"); err == nil || errors.Is(err, ErrNoTree) {
		t.Errorf("Files(../x) = %v, want a refusal", err)
	}
}

// holdEnv makes the test binary, run again as a child, hold the object
// cache's lock of the directory it names until its stdin closes: another
// process sharing the cache.
const holdEnv = "PREVIEWD_TEST_HOLD_CACHE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		unlock, err := NewCache(dir).lock(context.Background())
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Stdout.WriteString("held\n")
		io.Copy(io.Discard, os.Stdin)
		unlock()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCacheLockAcrossProcesses: while another process holds the object
// cache (a second previewd on one dataDir), a fetch waits for it, and one
// whose context ends first says why; once it lets go the fetch runs. A
// commit already cached is there without waiting.
func TestCacheLockAcrossProcesses(t *testing.T) {
	dir, sha := repo(t)
	cacheDir := filepath.Join(t.TempDir(), "cache.git")
	release := holdCache(t, cacheDir)

	c := NewCache(cacheDir)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Fetch(ctx, dir, "refs/heads/main", "refs/previewd/feat", sha, nil); err == nil || !strings.Contains(err.Error(), "another process fetches") {
		t.Fatalf("a fetch while another process holds the cache = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Fetch(context.Background(), dir, "refs/heads/main", "refs/previewd/feat", sha, nil) }()
	select {
	case err := <-done:
		t.Fatalf("the fetch did not wait for the other process: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !c.Has(context.Background(), sha) {
		t.Error("the fetch after the other process let go has not the commit")
	}

	holdCache(t, cacheDir)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Fetch(ctx, dir, "refs/heads/main", "refs/previewd/feat", sha, nil); err != nil {
		t.Errorf("a cached commit waited for the other process: %v", err)
	}
}

// holdCache starts the test binary again holding cacheDir's lock until
// the returned release (or the test's end).
func holdCache(t *testing.T, cacheDir string) (release func()) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), holdEnv+"="+cacheDir)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	release = func() { stdin.Close(); child.Wait() }
	t.Cleanup(release)
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "held\n" {
		t.Fatalf("the other process: %q %v", line, err)
	}
	return release
}
