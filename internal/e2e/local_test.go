package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestLifecycle pushes branches to a real repository and checks, through
// the preview proxy, that each environment serves its own commit with its
// own database, picks up an update without downtime, and is removed
// completely with its branch.
func TestLifecycle(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	mainSHA := r.commit("main", map[string]string{"banner.txt": "production"})
	featSHA := r.commit("feature-a", map[string]string{"banner.txt": "feature A"})
	dataDir := t.TempDir()
	in := start(t, configYAML(dataDir, r.bare, app, ""))
	a := in.api()

	a.waitStatus("production", env.StatusReady, mainSHA)
	fe := a.waitStatus("feature-a", env.StatusReady, featSHA)
	if fe.URL != fmt.Sprintf("http://feature-a.preview.test:%d", 8080) || fe.Kind != env.KindBranch || fe.Branch != "feature-a" {
		t.Errorf("feature-a = %+v", fe)
	}

	// Each serves its own commit.
	for key, want := range map[string]struct{ sha, banner string }{"production": {mainSHA, "production"}, "feature-a": {featSHA, "feature A"}} {
		h, code := a.health(key)
		if code != http.StatusOK || h.SHA != want.sha || h.Banner != want.banner || h.Key != key {
			t.Errorf("%s healthz = %d %+v, want sha %s banner %q", key, code, h, want.sha, want.banner)
		}
	}

	// Each has its own database.
	if code, body := a.preview("feature-a", "POST", "/api/documents", `{"title":"only in A","content":"# hi"}`); code != http.StatusCreated {
		t.Fatalf("creating a document in feature-a: %d %s", code, body)
	}
	if _, body := a.preview("feature-a", "GET", "/api/documents", ""); !strings.Contains(body, "only in A") {
		t.Errorf("feature-a does not list its document: %s", body)
	}
	if code, body := a.preview("production", "GET", "/api/documents", ""); code != http.StatusOK || strings.Contains(body, "only in A") {
		t.Errorf("production's documents: %d %s", code, body)
	}
	dbFile := filepath.Join(dataDir, "databases", "feature-a.sqlite")
	if _, err := os.Stat(dbFile); err != nil {
		t.Fatalf("feature-a's database file: %v", err)
	}

	// An update rolls to the new SHA, with no failed request on the way.
	pidsBefore := appPIDs(dataDir, "feature-a")
	if len(pidsBefore) != 1 {
		t.Fatalf("feature-a runs %d processes, want 1", len(pidsBefore))
	}
	stop := make(chan struct{})
	failures := make(chan string, 100)
	go func() {
		for {
			select {
			case <-stop:
				close(failures)
				return
			default:
			}
			// Not a.preview: it calls t.Fatal, which must not run off the
			// test's goroutine, and a refused connection during the
			// switch is exactly the failure to report.
			req, _ := http.NewRequest("GET", a.base+"/healthz", nil)
			req.Host = "feature-a.preview.test"
			resp, err := a.client.Do(req)
			if err != nil {
				failures <- err.Error()
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failures <- fmt.Sprintf("%d %s", resp.StatusCode, body)
			}
		}
	}()
	newSHA := r.commit("feature-a", map[string]string{"banner.txt": "feature A, second try"})
	in.sync()
	a.waitStatus("feature-a", env.StatusReady, newSHA)
	close(stop)
	for f := range failures {
		t.Errorf("request failed during the update: %s", f)
	}
	if h, _ := a.health("feature-a"); h.SHA != newSHA || h.Banner != "feature A, second try" {
		t.Errorf("after update, healthz = %+v", h)
	}
	if _, body := a.preview("feature-a", "GET", "/api/documents", ""); !strings.Contains(body, "only in A") {
		t.Errorf("the update lost feature-a's data: %s", body)
	}
	eventually(t, 30*time.Second, func() string {
		if processAlive(pidsBefore[0]) {
			return "the old process still runs"
		}
		if n := len(appPIDs(dataDir, "feature-a")); n != 1 {
			return fmt.Sprintf("%d processes for feature-a", n)
		}
		return ""
	})
	if _, err := os.Stat(filepath.Join(dataDir, "envs", "feature-a", "src-"+featSHA)); !os.IsNotExist(err) {
		t.Errorf("the old work dir is still there: %v", err)
	}

	// Deleting the branch removes the environment, its process and its
	// database file; the history stays.
	pids := appPIDs(dataDir, "feature-a")
	r.deleteBranch("feature-a")
	in.sync()
	a.waitGone("feature-a")
	for _, pid := range pids {
		if processAlive(pid) {
			t.Errorf("process %d of feature-a still runs", pid)
		}
	}
	if _, err := os.Stat(dbFile); !os.IsNotExist(err) {
		t.Errorf("database file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "envs", "feature-a")); !os.IsNotExist(err) {
		t.Errorf("env dir still there: %v", err)
	}
	if code, _ := a.preview("feature-a", "GET", "/healthz", ""); code != http.StatusNotFound {
		t.Errorf("proxy answers %d for a removed environment, want 404", code)
	}
	e, code := a.environment("feature-a")
	if code != http.StatusOK || e.DeletedAt == nil || len(e.Events) == 0 || e.Events[0].Reason != "Removed" {
		t.Errorf("history of feature-a: %d %+v", code, e)
	}
	// Production is untouched.
	if h, code := a.health("production"); code != http.StatusOK || h.SHA != mainSHA {
		t.Errorf("production after teardown: %d %+v", code, h)
	}
}

// TestHostileBranchNames gives branches with shell and SQL metacharacters,
// unicode and 250 characters valid keys, and no shell ever interprets them.
func TestHostileBranchNames(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	canary := filepath.Join(t.TempDir(), "pwned")
	names := []string{
		"x;touch${IFS}" + canary,
		"$(touch${IFS}" + canary + ")",
		"`touch${IFS}" + canary + "`",
		"x&&touch${IFS}" + canary + "||true",
		"a';DROP${IFS}TABLE${IFS}documents;--",
		"größe/ändern",
		strings.Repeat("long", 62) + "xx",
	}
	for _, n := range names {
		r.commit(n, map[string]string{"banner.txt": n})
	}
	in := start(t, configYAML(t.TempDir(), r.bare, app, ""))
	a := in.api()
	for _, n := range names {
		key := env.BranchKey(n)
		if err := env.CheckKey(key); err != nil {
			t.Fatalf("branch %q: %v", n, err)
		}
		e := a.waitStatus(key, env.StatusReady, "")
		if e.Branch != n {
			t.Errorf("env %s has branch %q, want %q", key, e.Branch, n)
		}
		if h, code := a.health(key); code != http.StatusOK || h.Banner != strings.TrimSpace(n) {
			t.Errorf("%s serves %d %+v", key, code, h)
		}
	}
	if _, err := os.Stat(canary); !os.IsNotExist(err) {
		t.Fatalf("a branch name was run by a shell: %v", err)
	}
}

// TestFailures: a failed build or migrate fails only that environment, with
// the log tail, and a new commit retries.
func TestFailures(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	r.commit("bad-build", map[string]string{"BREAK_BUILD": "1"})
	r.commit("bad-migrate", map[string]string{"BREAK_MIGRATE": "1"})
	r.commit("good", nil)
	extra := `
`
	yaml := configYAML(t.TempDir(), r.bare, app, extra)
	yaml = strings.Replace(yaml, "    run:", "    build: 'if [ -f BREAK_BUILD ]; then echo \"compile error: widget.go:12\"; exit 2; fi'\n    run:", 1)
	yaml = strings.Replace(yaml, "migrate: \""+app+" migrate\"", "migrate: 'if [ -f BREAK_MIGRATE ]; then echo \"migration 00003 failed: syntax error\"; exit 1; fi; "+app+" migrate'", 1)
	in := start(t, yaml)
	a := in.api()
	a.waitStatus("good", env.StatusReady, "")
	a.waitStatus("production", env.StatusReady, "")
	bb := a.waitStatus("bad-build", env.StatusFailed, "")
	if !strings.Contains(bb.Message, "build") || !strings.Contains(bb.Message, "compile error: widget.go:12") {
		t.Errorf("bad-build message lacks the log tail: %q", bb.Message)
	}
	bm := a.waitStatus("bad-migrate", env.StatusFailed, "")
	if !strings.Contains(bm.Message, "migrate") || !strings.Contains(bm.Message, "migration 00003 failed") {
		t.Errorf("bad-migrate message lacks the log tail: %q", bm.Message)
	}
	if resp, err := a.client.Get(a.base + "/api/v1/environments/bad-build/logs?lines=5"); err != nil {
		t.Error(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "compile error: widget.go:12") {
			t.Errorf("logs of bad-build: %d %q", resp.StatusCode, b)
		}
	}
	if code, _ := a.preview("bad-build", "GET", "/healthz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("proxy for a failed environment answers %d, want 503", code)
	}
	// A fix is picked up.
	r.git(r.work, "checkout", "-q", "bad-build")
	r.git(r.work, "rm", "-q", "BREAK_BUILD")
	fixed := r.commit("bad-build", nil)
	in.sync()
	a.waitStatus("bad-build", env.StatusReady, fixed)
}

// TestCrashRestart: a process that dies is restarted; one that keeps dying
// marks the environment failed with its last log lines.
func TestCrashRestart(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	dataDir := t.TempDir()
	in := start(t, configYAML(dataDir, r.bare, app, ""))
	a := in.api()
	a.waitStatus("production", env.StatusReady, "")
	for i := 1; i <= 3; i++ {
		pids := appPIDs(dataDir, "production")
		if len(pids) != 1 {
			t.Fatalf("round %d: %d processes", i, len(pids))
		}
		syscall.Kill(pids[0], syscall.SIGKILL)
		eventually(t, 30*time.Second, func() string {
			p := appPIDs(dataDir, "production")
			if len(p) != 1 || p[0] == pids[0] {
				return fmt.Sprintf("not restarted: %v", p)
			}
			if h, code := a.health("production"); code != http.StatusOK {
				return fmt.Sprintf("healthz %d %+v", code, h)
			}
			return ""
		})
	}
	e, _ := a.environment("production")
	if !strings.Contains(e.Message, "restarted") {
		t.Errorf("message after restarts: %q", e.Message)
	}
	// The fourth crash exceeds maxRestarts: 3.
	pids := appPIDs(dataDir, "production")
	syscall.Kill(pids[0], syscall.SIGKILL)
	f := a.waitStatus("production", env.StatusFailed, "")
	if !strings.Contains(f.Message, "gave up after 3 restarts") || !strings.Contains(f.Message, "==> run") {
		t.Errorf("failed message: %q", f.Message)
	}
}

// TestUnreachableRepository keeps environments running and says so.
func TestUnreachableRepository(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	r.commit("main", nil)
	r.commit("feat", nil)
	in := start(t, configYAML(t.TempDir(), r.bare, app, ""))
	a := in.api()
	a.waitStatus("feat", env.StatusReady, "")
	moved := r.bare + ".moved"
	if err := os.Rename(r.bare, moved); err != nil {
		t.Fatal(err)
	}
	in.sync()
	var body struct {
		Environments []env.Environment
		Source       struct {
			OK    bool
			Error string
		}
	}
	eventually(t, 30*time.Second, func() string {
		a.getJSON("/api/v1/environments", &body)
		if body.Source.OK {
			return "source still ok"
		}
		return ""
	})
	if len(body.Environments) != 2 || !strings.Contains(body.Source.Error, "git ls-remote") {
		t.Errorf("while unreachable: %+v", body)
	}
	if h, code := a.health("feat"); code != http.StatusOK {
		t.Errorf("feat stopped serving while the repository was away: %d %+v", code, h)
	}
	os.Rename(moved, r.bare)
	in.sync()
	eventually(t, 30*time.Second, func() string {
		a.getJSON("/api/v1/environments", &body)
		if !body.Source.OK {
			return "source still failing: " + body.Source.Error
		}
		return ""
	})
}

// TestKill9 kills previewd (its own process) with SIGKILL in the middle of
// work and checks that after a restart every environment is ready again,
// served by exactly one process, with its data.
func TestKill9(t *testing.T) {
	r := newRepo(t)
	r.commit("main", nil)
	r.commit("keep", map[string]string{"banner.txt": "keep"})
	proc := newProcess(t, r.bare)
	dataDir, a, run := proc.dataDir, proc.api, proc.start
	p1 := run()
	a.waitStatus("keep", env.StatusReady, "")
	a.waitStatus("production", env.StatusReady, "")
	if code, body := a.preview("keep", "POST", "/api/documents", `{"title":"survives","content":"x"}`); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	keepPIDs := appPIDs(dataDir, "keep")

	// Kill it in the middle of rolling out a new branch.
	gone := r.commit("mid-flight", map[string]string{"banner.txt": "mid"})
	if resp, err := a.client.Post(a.base+"/api/v1/sync", "", nil); err == nil {
		resp.Body.Close()
	}
	time.Sleep(30 * time.Millisecond)
	p1.Process.Signal(syscall.SIGKILL)
	p1.Wait()

	p2 := run()
	defer func() {
		p2.Process.Signal(syscall.SIGTERM)
		p2.Wait()
		proc.killApps("keep", "production", "mid-flight")
	}()
	a.waitStatus("mid-flight", env.StatusReady, gone)
	a.waitStatus("keep", env.StatusReady, "")
	a.waitStatus("production", env.StatusReady, "")
	for _, k := range []string{"keep", "production", "mid-flight"} {
		if n := len(appPIDs(dataDir, k)); n != 1 {
			t.Errorf("%s runs %d processes after the restart, want 1", k, n)
		}
	}
	if got := appPIDs(dataDir, "keep"); len(got) != 1 || got[0] != keepPIDs[0] {
		t.Errorf("keep was not adopted: pid %v, was %v", got, keepPIDs)
	}
	if _, body := a.preview("keep", "GET", "/api/documents", ""); !strings.Contains(body, "survives") {
		t.Errorf("keep lost its data: %s", body)
	}
	// Nothing stray on disk: each env dir has exactly one checkout.
	for _, k := range []string{"keep", "production", "mid-flight"} {
		m, _ := filepath.Glob(filepath.Join(dataDir, "envs", k, "src-*"))
		dirs := 0
		for _, x := range m {
			if !strings.HasSuffix(x, ".ok") {
				dirs++
			}
		}
		if dirs != 1 {
			t.Errorf("%s has %d checkouts: %v", k, dirs, m)
		}
	}
	// And a branch deleted while previewd was down is removed on restart.
	p2.Process.Signal(syscall.SIGKILL)
	p2.Wait()
	r.deleteBranch("keep")
	p2 = run()
	a.waitGone("keep")
	eventually(t, 30*time.Second, func() string {
		if n := len(appPIDs(dataDir, "keep")); n != 0 {
			return fmt.Sprintf("keep still runs %d processes", n)
		}
		return ""
	})
	if _, err := os.Stat(filepath.Join(dataDir, "databases", "keep.sqlite")); !os.IsNotExist(err) {
		t.Errorf("keep's database survived its branch: %v", err)
	}
}

func freePort(t testing.TB) int {
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*netTCPAddr).Port
}
