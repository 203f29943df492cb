package e2e

import (
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

// loopbackYAML runs the example app on $HOST, or, in a checkout with a
// file BIND_ANY, on every interface: an app that ignores HOST.
func loopbackYAML(t *testing.T, r *repo, app, extra string) string {
	t.Helper()
	yaml := configYAML(t.TempDir(), r.bare, app, extra)
	run := `run: "` + app + ` serve"`
	if !strings.Contains(yaml, run) {
		t.Fatalf("config has no %s", run)
	}
	return strings.Replace(yaml, run, `run: 'if [ -f BIND_ANY ]; then export HOST=0.0.0.0; fi; exec `+app+` serve'`, 1)
}

// TestLoopback: previewd gives the app HOST=127.0.0.1, and the app honours
// it, so a preview is reached only through previewd; an app that listens
// on every interface anyway is ready with a warning in its status and
// event, or, with previews.requireLoopback, fails for that SHA while the
// version before keeps serving.
func TestLoopback(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the listen check reads /proc")
	}
	app, _ := binaries(t)

	t.Run("warning", func(t *testing.T) {
		r := newRepo(t)
		mainSHA := r.commit("main", map[string]string{"banner.txt": "production"})
		openSHA := r.commit("open", map[string]string{"BIND_ANY": ""})
		a := start(t, loopbackYAML(t, r, app, "")).api()
		if e := a.waitStatus("production", env.StatusReady, mainSHA); strings.Contains(e.Message, "warning") {
			t.Errorf("an app on $HOST got a warning: %q", e.Message)
		}
		e := a.waitStatus("open", env.StatusReady, openSHA)
		if !strings.Contains(e.Message, "warning: listens on [::]:") || !strings.Contains(e.Message, "reachable around previewd's proxy; bind to $HOST") {
			t.Errorf("status of an app on every interface: %q", e.Message)
		}
		e, _ = a.environment("open")
		if len(e.Events) == 0 || e.Events[0].Reason != "Ready" || !strings.Contains(e.Events[0].Message, "warning: listens on") {
			t.Errorf("latest event: %+v, want Ready with the warning", e.Events)
		}
		if h, code := a.health("open"); code != http.StatusOK || h.SHA != openSHA {
			t.Errorf("open serves %d %+v despite the warning", code, h)
		}
	})

	t.Run("requireLoopback", func(t *testing.T) {
		r := newRepo(t)
		oldSHA := r.commit("main", map[string]string{"banner.txt": "production"})
		in := start(t, loopbackYAML(t, r, app, "previews: {requireLoopback: true}\n"))
		a := in.api()
		a.waitStatus("production", env.StatusReady, oldSHA)
		newSHA := r.commit("main", map[string]string{"BIND_ANY": ""})
		in.sync()
		e := a.waitStatus("production", env.StatusFailed, newSHA)
		if !strings.Contains(e.Message, "start of "+env.ShortSHA(newSHA)+" failed: listens on [::]:") || !strings.Contains(e.Message, "still serving "+env.ShortSHA(oldSHA)) {
			t.Errorf("status of a refused start: %q", e.Message)
		}
		if h, code := a.health("production"); code != http.StatusOK || h.SHA != oldSHA {
			t.Errorf("production serves %d %+v after the refused start, want %s", code, h, env.ShortSHA(oldSHA))
		}
	})
}
