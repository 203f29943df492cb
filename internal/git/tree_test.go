package git

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/gittest"
)

func TestFileAndChanged(t *testing.T) {
	dir, first := repo(t)
	g := gittest.At(t, dir)
	ctx := context.Background()
	c := NewCache(filepath.Join(t.TempDir(), "cache.git"))
	second := g.Commit(map[string]string{".previewd.yaml": "runtime: {local: {run: ./two}}\n", "sub/x.txt": "x"})
	g.Git("checkout", "-q", "-b", "feat")
	feat := g.Commit(map[string]string{"apps/web/x.go": "package x", "hello.txt": ""})
	g.Git("checkout", "-q", "main")
	// main moves on after feat branched: its changes are not feat's.
	mainHead := g.Commit(map[string]string{"docs/a.md": "a"})
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
