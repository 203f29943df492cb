package git

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// gitIn runs git in dir with a fixed identity.
func gitIn(t *testing.T, dir string, args ...string) string {
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

// commitFiles writes files (path -> content; "" removes) in dir and
// commits them, returning the commit.
func commitFiles(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if c == "" {
			os.Remove(full)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitIn(t, dir, "add", "-A")
	gitIn(t, dir, "commit", "-q", "--allow-empty", "-m", "x")
	return gitIn(t, dir, "rev-parse", "HEAD")
}

func TestFileAndChanged(t *testing.T) {
	dir, first := repo(t)
	ctx := context.Background()
	c := NewCache(filepath.Join(t.TempDir(), "cache.git"))
	second := commitFiles(t, dir, map[string]string{".previewd.yaml": "runtime: {local: {run: ./two}}\n", "sub/x.txt": "x"})
	gitIn(t, dir, "checkout", "-q", "-b", "feat")
	feat := commitFiles(t, dir, map[string]string{"apps/web/x.go": "package x", "hello.txt": ""})
	gitIn(t, dir, "checkout", "-q", "main")
	// main moves on after feat branched: its changes are not feat's.
	mainHead := commitFiles(t, dir, map[string]string{"docs/a.md": "a"})
	for ref, sha := range map[string]string{"refs/heads/main": mainHead, "refs/heads/feat": feat} {
		if err := c.Fetch(ctx, dir, ref, "refs/previewd/"+strings.TrimPrefix(ref, "refs/heads/"), sha, nil); err != nil {
			t.Fatal(err)
		}
	}

	if b, err := c.File(ctx, second, ".previewd.yaml"); err != nil || string(b) != "runtime: {local: {run: ./two}}\n" {
		t.Errorf("File at second = %q, %v", b, err)
	}
	if _, err := c.File(ctx, first, ".previewd.yaml"); !errors.Is(err, ErrNoFile) {
		t.Errorf("File at first = %v, want ErrNoFile", err)
	}
	for _, name := range []string{"sub", "link", "nope/x"} {
		if _, err := c.File(ctx, second, name); !errors.Is(err, ErrNoFile) {
			t.Errorf("File(%q) = %v, want ErrNoFile", name, err)
		}
	}
	for _, name := range []string{"../x", "", "a:b"} {
		if _, err := c.File(ctx, second, name); err == nil || errors.Is(err, ErrNoFile) {
			t.Errorf("File(%q) = %v, want a refusal", name, err)
		}
	}

	got, err := c.Changed(ctx, mainHead, feat)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if want := []string{"apps/web/x.go", "hello.txt"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Changed(main, feat) = %q, want %q", got, want)
	}
	if got, err := c.Changed(ctx, mainHead, mainHead); err != nil || got == nil || len(got) != 0 {
		t.Errorf("Changed(main, main) = %q, %v; want empty, not nil", got, err)
	}
	if _, err := c.Changed(ctx, "--output=x"+strings.Repeat("a", 30), feat); err == nil {
		t.Error("an option-like base was accepted")
	}
}
