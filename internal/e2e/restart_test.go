package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

// TestFailedRestartsBackOff: an app that dies and then cannot come back
// (here: every start after the first exits at once) is restarted with
// backoff up to maxRestarts, each failed restart counting as one, before
// the environment is marked failed; one failed restart is not a verdict.
func TestFailedRestartsBackOff(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	dataDir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "started")
	yaml := configYAML(dataDir, r.bare, app, "")
	yaml = strings.Replace(yaml, `run: "`+app+` serve"`, `run: 'if [ -e `+marker+` ]; then echo "cannot start again"; exit 3; fi; touch `+marker+`; exec `+app+` serve'`, 1)
	in := start(t, yaml)
	a := in.api()
	a.waitStatus("production", env.StatusReady, "")
	pids := appPIDs(dataDir, "production")
	if len(pids) != 1 {
		t.Fatalf("%d processes", len(pids))
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	e := a.waitStatus("production", env.StatusFailed, "")
	restarts := 0
	for _, ev := range e.Events {
		if ev.Reason == "Restarted" {
			restarts++
		}
	}
	if restarts != 3 {
		t.Errorf("%d restarts before giving up, want 3 (maxRestarts); events: %+v", restarts, e.Events)
	}
	if !strings.Contains(e.Message, "gave up after 3 restarts") || !strings.Contains(e.Message, "cannot start again") {
		t.Errorf("message: %q", e.Message)
	}
}
