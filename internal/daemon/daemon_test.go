package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/config"

	"github.com/previewd/previewd/internal/testsvc"
)

// TestNewClosesWhatItOpenedOnFailure: when a part fails to start (here the
// kubernetes runtime, whose kubeconfig is missing), what New opened before
// it (the store) is closed again: no file of the data dir stays open.
func TestNewClosesWhatItOpenedOnFailure(t *testing.T) {
	dir := t.TempDir()
	yaml := `
domain: preview.example.com
forge: {git: {url: ` + dir + `, pollInterval: 1h}}
database: {kind: sqlite}
runtime:
  kind: argocd
  kubernetes:
    kubeconfig: ` + filepath.Join(dir, "missing-kubeconfig") + `
    argocd: {token: t0ken}
`
	cfg, err := config.Parse([]byte(yaml), dir, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(dir, "data")
	if _, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("New worked without a kubeconfig")
	}
	if open := openFilesUnder(t, cfg.DataDir); len(open) > 0 {
		t.Errorf("still open after a failed New: %v", open)
	}
}

// openFilesUnder lists this process's open files under dir.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		testsvc.SkipUnlessCI(t, "no /proc: %v", err)
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir) {
			out = append(out, target)
		}
	}
	return out
}
