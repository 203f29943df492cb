package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestDownUp puts a branch's environment down through the API: its
// process and database go, a push does not bring it back, nor does a
// restart of previewd on the same data dir; up deploys the branch's head
// again. Production is refused.
func TestDownUp(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	mainSHA := r.commit("main", map[string]string{"banner.txt": "production"})
	featSHA := r.commit("feature-d", map[string]string{"banner.txt": "feature D"})
	dataDir := t.TempDir()
	yaml := configYAML(dataDir, r.bare, app, "")
	in := start(t, yaml)
	a := in.api()
	a.waitStatus("production", env.StatusReady, mainSHA)
	a.waitStatus("feature-d", env.StatusReady, featSHA)

	post := func(in *instance, path string) int {
		t.Helper()
		resp, err := in.client.Post(in.base+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(in, "/api/v1/environments/production/down"); code != http.StatusConflict {
		t.Errorf("down production: %d, want 409", code)
	}
	if code := post(in, "/api/v1/environments/feature-d/down"); code != http.StatusAccepted {
		t.Fatalf("down: %d", code)
	}
	a.waitGone("feature-d")
	dbFile := filepath.Join(dataDir, "databases", "feature-d.sqlite")
	eventually(t, 20*time.Second, func() string {
		if pids := appPIDs(dataDir, "feature-d"); len(pids) != 0 {
			return "feature-d still runs"
		}
		if _, err := os.Stat(dbFile); err == nil {
			return "feature-d's database is still there"
		}
		return ""
	})
	isDown := func(a *api) {
		t.Helper()
		var e struct {
			Key       string     `json:"key"`
			Down      bool       `json:"down"`
			DeletedAt *time.Time `json:"deletedAt"`
		}
		if code := a.getJSON("/api/v1/environments/feature-d", &e); code != http.StatusOK || !e.Down {
			t.Fatalf("GET feature-d: %d %+v; want down", code, e)
		}
	}
	isDown(a)

	// A push and a listing do not redeploy it.
	newSHA := r.commit("feature-d", map[string]string{"banner.txt": "feature D, again"})
	// A second branch pushed with it: once it is ready, the listing that
	// saw both pushes has been reconciled.
	probe := r.commit("probe-1", map[string]string{"banner.txt": "probe"})
	in.sync()
	a.waitStatus("probe-1", env.StatusReady, probe)
	if pids := appPIDs(dataDir, "feature-d"); len(pids) != 0 {
		t.Fatal("a push redeployed a down environment")
	}
	a.waitGone("feature-d")

	// Nor does a restart on the same data dir.
	in.stop()
	in = start(t, yaml)
	a = in.api()
	a.waitStatus("production", env.StatusReady, mainSHA)
	probe = r.commit("probe-2", map[string]string{"banner.txt": "probe"})
	in.sync()
	a.waitStatus("probe-2", env.StatusReady, probe)
	if pids := appPIDs(dataDir, "feature-d"); len(pids) != 0 {
		t.Fatal("a restart redeployed a down environment")
	}
	a.waitGone("feature-d")
	isDown(a)

	// Up deploys the branch's head again.
	if code := post(in, "/api/v1/environments/feature-d/up"); code != http.StatusAccepted {
		t.Fatalf("up: %d", code)
	}
	a.waitStatus("feature-d", env.StatusReady, newSHA)
	if h, code := a.health("feature-d"); code != http.StatusOK || h.SHA != newSHA {
		t.Errorf("feature-d after up: %d %+v", code, h)
	}
}
