package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

// TestLs runs `previewd ls` against a running previewd.
func TestLs(t *testing.T) {
	app, previewd := binaries(t)
	r := newRepo(t)
	sha := r.commit("main", nil)
	r.commit("feature/ls", nil)
	in := start(t, configYAML(t.TempDir(), r.bare, app, ""))
	a := in.api()
	a.waitStatus("production", env.StatusReady, sha)
	key := env.BranchKey("feature/ls")
	a.waitStatus(key, env.StatusReady, "")
	out, err := exec.Command(previewd, "ls", "--server", in.base).CombinedOutput()
	if err != nil {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "KEY") {
		t.Fatalf("ls printed %q", out)
	}
	// KEY STATUS SHA AGE LAST-ACTIVITY URL
	if f := strings.Fields(lines[1]); f[0] != "production" || f[1] != "ready" || f[2] != env.ShortSHA(sha) || !strings.HasPrefix(f[5], "http://production.") {
		t.Errorf("production row: %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != key || f[1] != "ready" {
		t.Errorf("branch row: %q", lines[2])
	}
	for _, flag := range []string{"-o", "--json"} {
		args := []string{"ls", "--server", in.base, flag}
		if flag == "-o" {
			args = append(args, "json")
		}
		out, err = exec.Command(previewd, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"key": "production"`) || !strings.Contains(string(out), `"branch": "feature/ls"`) {
			t.Errorf("ls %s: %v %s", flag, err, out)
		}
	}
	if out, err := exec.Command(previewd, "ls", "--server", "http://127.0.0.1:1").CombinedOutput(); err == nil || !strings.Contains(string(out), "asking previewd") {
		t.Errorf("ls with nothing listening: %v %s", err, out)
	}
}
