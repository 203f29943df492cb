package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestRestartWhileRepositoryUnreachable: after previewd and its apps die
// together (a reboot) and the repository cannot be reached when previewd
// comes back, the environments are started again from what was deployed,
// and the status says the repository is unreachable.
func TestRestartWhileRepositoryUnreachable(t *testing.T) {
	r := newRepo(t)
	r.commit("main", nil)
	sha := r.commit("feat", map[string]string{"banner.txt": "feat"})
	proc := newProcess(t, r.bare)
	a, run := proc.api, proc.start
	p := run()
	a.waitStatus("feat", env.StatusReady, sha)
	a.waitStatus("production", env.StatusReady, "")

	// The machine goes down: previewd and every app die at once.
	p.Process.Signal(syscall.SIGKILL)
	p.Wait()
	proc.killApps("feat", "production")
	if err := os.Rename(r.bare, r.bare+".away"); err != nil {
		t.Fatal(err)
	}
	p = run()
	defer func() {
		p.Process.Signal(syscall.SIGTERM)
		p.Wait()
		proc.killApps("feat", "production")
	}()
	eventually(t, 30*time.Second, func() string {
		req, _ := http.NewRequest("GET", a.base+"/healthz", nil)
		req.Host = "feat.preview.test"
		resp, err := a.client.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		var h health
		json.NewDecoder(resp.Body).Decode(&h)
		if resp.StatusCode != http.StatusOK || h.SHA != sha || h.Banner != "feat" {
			return fmt.Sprintf("feat answers %d %+v", resp.StatusCode, h)
		}
		return ""
	})
	var body struct {
		Source struct {
			OK    bool
			Error string
		}
	}
	a.getJSON("/api/v1/environments", &body)
	if body.Source.OK {
		t.Errorf("the source is reported ok while the repository is away")
	}
}
