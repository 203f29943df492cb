package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// lifecycleYAML is configYAML with another run command (empty: the
// app's) and a lifecycle section.
func lifecycleYAML(dataDir, repoURL, app, run, lifecycle string) string {
	if run == "" {
		run = app + " serve"
	}
	return configYAMLRun(dataDir, repoURL, app, run, "lifecycle:\n"+lifecycle)
}

// post sends an API POST and returns its status and body.
func (a *api) post(path, body string) (int, string) {
	a.t.Helper()
	resp, err := a.client.Post(a.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hasEvent reports whether key's history has an event with reason.
func (a *api) hasEvent(key, reason string) bool {
	e, code := a.environment(key)
	if code != http.StatusOK {
		return false
	}
	for _, ev := range e.Events {
		if ev.Reason == reason {
			return true
		}
	}
	return false
}

// TestSleepAndWakeOnRequest: idle past sleepAfter, a preview's process
// stops while its data stays; the next request through the proxy wakes it
// and is answered by the app, with the data. Production never sleeps.
func TestSleepAndWakeOnRequest(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	mainSHA := r.commit("main", nil)
	sha := r.commit("feature-a", map[string]string{"banner.txt": "A"})
	dataDir := t.TempDir()
	// Not less: a wake that takes longer than sleepAfter is idle again
	// at once (its activity is the request that woke it).
	in := start(t, lifecycleYAML(dataDir, r.bare, app, "", "  sleepAfter: 3s\n"))
	a := in.api()
	a.waitStatus("production", env.StatusReady, mainSHA)
	a.waitStatus("feature-a", env.StatusReady, sha)
	if code, body := a.preview("feature-a", "POST", "/api/documents", `{"title":"kept while asleep","content":"# hi"}`); code != http.StatusCreated {
		t.Fatalf("creating a document: %d %s", code, body)
	}
	e := a.waitStatus("feature-a", env.StatusSleeping, sha)
	if !strings.Contains(e.Message, "without activity") || e.LastActivityAt == nil {
		t.Errorf("sleeping preview: %q, last activity %v", e.Message, e.LastActivityAt)
	}
	// Sleeping is said before the process stops: it goes right after.
	eventually(t, 20*time.Second, func() string {
		if pids := appPIDs(dataDir, "feature-a"); len(pids) != 0 {
			return fmt.Sprintf("a sleeping preview still runs %v", pids)
		}
		return ""
	})
	if _, err := os.Stat(dataDir + "/databases/feature-a.sqlite"); err != nil {
		t.Fatalf("sleep lost the database: %v", err)
	}
	eventually(t, 30*time.Second, func() string {
		var audit struct {
			Entries []struct{ Actor, Action, Key string } `json:"entries"`
		}
		a.getJSON("/api/v1/audit", &audit)
		for _, en := range audit.Entries {
			if en.Actor == "previewd" && en.Action == "sleep" && en.Key == "feature-a" {
				return ""
			}
		}
		return fmt.Sprintf("the automatic sleep is not in the audit trail: %+v", audit.Entries)
	})

	code, body := a.preview("feature-a", "GET", "/api/documents", "")
	if code != http.StatusOK || !strings.Contains(body, "kept while asleep") {
		t.Fatalf("the waking request: %d %s", code, body)
	}
	if pids := appPIDs(dataDir, "feature-a"); len(pids) != 1 {
		t.Errorf("woken preview runs %d processes", len(pids))
	}
	if e, _ := a.environment("production"); e.Status != env.StatusReady {
		t.Errorf("production is %s: it never sleeps", e.Status)
	}
	if !a.hasEvent("feature-a", "Waking") {
		t.Error("no Waking event in the history")
	}
}

// TestWakingPageForBrowser: a browser waiting more than a second for a
// slow app to wake gets the waking page, which reloads; an API client
// just waits and gets the app's answer.
func TestWakingPageForBrowser(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	sha := r.commit("slow", nil)
	dataDir := t.TempDir()
	in := start(t, lifecycleYAML(dataDir, r.bare, app, "sleep 2; exec "+app+" serve", "  wakeTimeout: 30s\n"))
	a := in.api()
	a.waitStatus("slow", env.StatusReady, sha)
	if code, body := a.post("/api/v1/environments/slow/sleep", ""); code != http.StatusAccepted {
		t.Fatalf("sleep: %d %s", code, body)
	}
	a.waitStatus("slow", env.StatusSleeping, sha)
	// Sleeping is said before the process stops; a request before it has
	// stopped is answered by the still-running app, so wait for the stop.
	eventually(t, 20*time.Second, func() string {
		if pids := appPIDs(dataDir, "slow"); len(pids) != 0 {
			return fmt.Sprintf("a sleeping preview still runs %v", pids)
		}
		return ""
	})

	req, _ := http.NewRequest("GET", a.base+"/", nil)
	req.Host = "slow.preview.test"
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(page), `http-equiv="refresh"`) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a browser got %s %q", resp.Status, page)
	}
	// Another client waits for the app itself.
	code, body := a.preview("slow", "GET", "/healthz", "")
	if code != http.StatusOK || !strings.Contains(body, sha) {
		t.Fatalf("an API client got %d %s", code, body)
	}
}

// TestCapAndQueueAcrossRestart: beyond maxRunning previews queue, first
// come first served, with their place; the order survives a restart, and
// a freed slot starts the first. Production never counts.
func TestCapAndQueueAcrossRestart(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	mainSHA := r.commit("main", nil)
	dataDir := t.TempDir()
	yaml := lifecycleYAML(dataDir, r.bare, app, "", "  maxRunning: 1\n  wakeTimeout: 1s\n")
	in := start(t, yaml)
	a := in.api()
	a.waitStatus("production", env.StatusReady, mainSHA)
	shas := map[string]string{}
	for _, b := range []string{"a", "b", "c"} {
		shas[b] = r.commit(b, map[string]string{"banner.txt": b})
		in.sync()
		if b == "a" {
			a.waitStatus(b, env.StatusReady, shas[b])
		} else {
			a.waitStatus(b, env.StatusQueued, shas[b])
		}
	}
	if e, _ := a.environment("c"); e.Message != "queued: 2nd of 2 (maxRunning 1)" {
		t.Errorf("c: %q", e.Message)
	}
	// A request for a queued preview waits for its turn, at most
	// wakeTimeout.
	if code, _ := a.preview("c", "GET", "/healthz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("a queued preview answered %d, want 503 after wakeTimeout", code)
	}
	in.stop()

	in = start(t, yaml)
	a = in.api()
	a.waitStatus("a", env.StatusReady, shas["a"])
	a.waitStatus("b", env.StatusQueued, shas["b"])
	a.waitStatus("c", env.StatusQueued, shas["c"])
	r.deleteBranch("a")
	in.sync()
	a.waitGone("a")
	a.waitStatus("b", env.StatusReady, shas["b"])
	e := a.waitStatus("c", env.StatusQueued, shas["c"])
	eventually(t, 20*time.Second, func() string {
		if e, _ = a.environment("c"); e.Message != "queued: 1st of 1 (maxRunning 1)" {
			return "c: " + e.Message
		}
		return ""
	})
	if e, _ := a.environment("production"); e.Status != env.StatusReady {
		t.Errorf("production %s", e.Status)
	}
}

// TestEvictLeastRecentlyUsed: with evict idle, a new preview puts the
// least recently active one to sleep and takes its slot; a request to the
// sleeper wakes it in turn.
func TestEvictLeastRecentlyUsed(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	dataDir := t.TempDir()
	in := start(t, lifecycleYAML(dataDir, r.bare, app, "", "  maxRunning: 1\n  evict: idle\n"))
	a := in.api()
	shaA := r.commit("a", nil)
	in.sync()
	a.waitStatus("a", env.StatusReady, shaA)
	shaB := r.commit("b", nil)
	in.sync()
	a.waitStatus("b", env.StatusReady, shaB)
	e := a.waitStatus("a", env.StatusSleeping, shaA)
	if !strings.Contains(e.Message, "make room for b") {
		t.Errorf("a: %q", e.Message)
	}
	// Sleeping is said before the process stops: a request before it has
	// stopped is answered by the old process, wakes nothing and evicts
	// nothing, so wait for the stop.
	eventually(t, 20*time.Second, func() string {
		if pids := appPIDs(dataDir, "a"); len(pids) != 0 {
			return fmt.Sprintf("evicted a still runs %v", pids)
		}
		return ""
	})
	if code, body := a.preview("a", "GET", "/healthz", ""); code != http.StatusOK || !strings.Contains(body, shaA) {
		t.Fatalf("waking a: %d %s", code, body)
	}
	a.waitStatus("b", env.StatusSleeping, shaB)
	eventually(t, 20*time.Second, func() string {
		if pids := appPIDs(dataDir, "b"); len(pids) != 0 {
			return fmt.Sprintf("evicted b still runs %v", pids)
		}
		return ""
	})
}

// TestTTLWarnRemoveRevive: the TTL warns, then removes the preview
// completely; a poll does not bring it back, a push does.
func TestTTLWarnRemoveRevive(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	mainSHA := r.commit("main", nil)
	dataDir := t.TempDir()
	in := start(t, lifecycleYAML(dataDir, r.bare, app, "", "  ttl: 15s\n  warnBefore: 12s\n"))
	a := in.api()
	sha := r.commit("old", nil)
	in.sync()
	a.waitStatus("old", env.StatusReady, sha)
	eventually(t, 30*time.Second, func() string {
		// Saved just after the rollout's status.
		if e, _ := a.environment("old"); e.ExpiresAt == nil || time.Until(*e.ExpiresAt) > 16*time.Second {
			return fmt.Sprintf("expiresAt %v", e.ExpiresAt)
		}
		return ""
	})
	eventually(t, 20*time.Second, func() string {
		if !a.hasEvent("old", "ExpiryWarning") {
			return "no warning yet"
		}
		return ""
	})
	a.waitGone("old")
	if pids := appPIDs(dataDir, "old"); len(pids) != 0 {
		t.Errorf("an expired preview still runs %v", pids)
	}
	if _, err := os.Stat(dataDir + "/databases/old.sqlite"); !os.IsNotExist(err) {
		t.Errorf("the expired preview's database is still there: %v", err)
	}
	// A second branch pushed before the poll: once it has been ready, the
	// listing that saw both has been reconciled (not a fixed sleep).
	r.commit("probe", nil)
	in.sync()
	eventually(t, 60*time.Second, func() string {
		if !a.hasEvent("probe", "Ready") {
			return "the probe branch has not been ready yet"
		}
		return ""
	})
	if e, _ := a.environment("old"); e.DeletedAt == nil {
		t.Fatalf("a poll brought the expired preview back: %s", e.Status)
	}
	sha2 := r.commit("old", map[string]string{"banner.txt": "again"})
	in.sync()
	a.waitStatus("old", env.StatusReady, sha2)
	if e, _ := a.environment("production"); e.Status != env.StatusReady || e.SHA != mainSHA {
		t.Errorf("production %s", e.Status)
	}
}

// TestKeepAndExtend: a kept preview neither sleeps nor expires; an
// extended one outlives its TTL; production refuses both.
func TestKeepAndExtend(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	in := start(t, lifecycleYAML(t.TempDir(), r.bare, app, "", "  sleepAfter: 1s\n  ttl: 15s\n  warnBefore: 1s\n"))
	a := in.api()
	shaK, shaE, shaO := r.commit("kept", nil), r.commit("extended", nil), r.commit("other", nil)
	in.sync()
	// Kept and extended as soon as they exist: idle for a second after
	// its push, a preview may sleep before the last of the three is
	// ready, and a kept sleeper stays asleep.
	var extend string
	for _, req := range []struct{ key, action, body string }{{"kept", "keep", ""}, {"extended", "extend", `{"duration":"1h"}`}} {
		eventually(t, 60*time.Second, func() string {
			code, body := a.post("/api/v1/environments/"+req.key+"/"+req.action, req.body)
			if code != http.StatusAccepted {
				return fmt.Sprintf("%s %s: %d %s", req.action, req.key, code, body)
			}
			extend = body
			return ""
		})
	}
	if !strings.Contains(extend, "expiresAt") {
		t.Fatalf("extend: %s", extend)
	}
	a.waitStatus("kept", env.StatusReady, shaK)
	// The other two sleep a second after they are ready: that they have
	// been is what counts.
	for k, sha := range map[string]string{"extended": shaE, "other": shaO} {
		eventually(t, 60*time.Second, func() string {
			if e, _ := a.environment(k); e.SHA != sha || !a.hasEvent(k, "Ready") {
				return fmt.Sprintf("%s has not been ready at %s: %s at %s", k, env.ShortSHA(sha), e.Status, env.ShortSHA(e.SHA))
			}
			return ""
		})
	}
	for _, p := range []string{"keep", "extend", "sleep"} {
		if code, _ := a.post("/api/v1/environments/production/"+p, `{"duration":"1h"}`); code != http.StatusConflict {
			t.Errorf("%s production: %d, want 409", p, code)
		}
	}
	a.waitGone("other")
	a.waitStatus("extended", env.StatusSleeping, shaE)
	if e, _ := a.environment("kept"); e.Status != env.StatusReady || !e.Kept || e.ExpiresAt != nil {
		t.Errorf("kept: %s kept=%v expires %v", e.Status, e.Kept, e.ExpiresAt)
	}
	if e, _ := a.environment("production"); e.Status != env.StatusReady {
		t.Errorf("production %s", e.Status)
	}
}

// TestLifecycleSurvivesKill9: kill -9 of previewd while one preview
// sleeps and another queues loses neither: after the restart the sleeper
// is still asleep (not started again) and the queue keeps its order.
func TestLifecycleSurvivesKill9(t *testing.T) {
	app, previewd := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	p := newProcess(t, r.bare)
	port := strings.TrimPrefix(p.api.base, "http://127.0.0.1:")
	if err := os.WriteFile(p.cfg, []byte(lifecycleYAML(p.dataDir, r.bare, app, "", "  maxRunning: 1\n")+"listen: 127.0.0.1:"+port+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = previewd
	cmd := p.start()
	a := p.api
	shas := map[string]string{}
	sync := func() {
		if code, _ := a.post("/api/v1/sync", ""); code != http.StatusAccepted {
			t.Fatalf("sync: %d", code)
		}
	}
	eventually(t, 30*time.Second, func() string {
		if _, code := a.environment("production"); code != http.StatusOK {
			return "not up"
		}
		return ""
	})
	shas["a"] = r.commit("a", nil)
	sync()
	a.waitStatus("a", env.StatusReady, shas["a"])
	shas["b"] = r.commit("b", nil)
	sync()
	a.waitStatus("b", env.StatusQueued, shas["b"])
	if code, body := a.post("/api/v1/environments/a/sleep", ""); code != http.StatusAccepted {
		t.Fatalf("sleep a: %d %s", code, body)
	}
	a.waitStatus("a", env.StatusSleeping, shas["a"])
	a.waitStatus("b", env.StatusReady, shas["b"])
	shas["c"] = r.commit("c", nil)
	sync()
	a.waitStatus("c", env.StatusQueued, shas["c"])
	eventually(t, 20*time.Second, func() string {
		if pids := appPIDs(p.dataDir, "a"); len(pids) != 0 {
			return fmt.Sprintf("the sleeper still runs %v", pids)
		}
		return ""
	})

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	cmd = p.start()
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	a.waitStatus("b", env.StatusReady, shas["b"])
	a.waitStatus("a", env.StatusSleeping, shas["a"])
	a.waitStatus("c", env.StatusQueued, shas["c"])
	if pids := appPIDs(p.dataDir, "a"); len(pids) != 0 {
		t.Errorf("the sleeper was started again after the restart: %v", pids)
	}
	r.deleteBranch("b")
	sync()
	a.waitGone("b")
	a.waitStatus("c", env.StatusReady, shas["c"])
	a.waitStatus("a", env.StatusSleeping, shas["a"])
	// Right after the restart the check above may run before a has been
	// reconciled; by now it has (c took the slot b left).
	if pids := appPIDs(p.dataDir, "a"); len(pids) != 0 {
		t.Errorf("the sleeper runs %v after the restart", pids)
	}
	p.killApps("a", "c", "production")
}
