package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/daemon"
	"github.com/previewd/previewd/internal/env"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the example app and previewd once per test process.
func binaries(t testing.TB) (app, previewd string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "previewd-e2e-bin-")
		if buildErr != nil {
			return
		}
		root := moduleRoot()
		for name, pkg := range map[string]string{"app": "./examples/markdown-editor", "previewd": "./cmd/previewd"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building %s: %w\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "app"), filepath.Join(binDir, "previewd")
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// repo is a bare repository plus a work tree that pushes to it.
type repo struct {
	t          testing.TB
	bare, work string
}

func newRepo(t testing.TB) *repo {
	t.Helper()
	dir := t.TempDir()
	r := &repo{t: t, bare: filepath.Join(dir, "origin.git"), work: filepath.Join(dir, "work")}
	r.git(dir, "init", "-q", "--bare", "--initial-branch=main", r.bare)
	r.git(dir, "init", "-q", "--initial-branch=main", r.work)
	r.git(r.work, "remote", "add", "origin", r.bare)
	return r
}

func (r *repo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files on branch (created from main if new), commits, pushes
// and returns the new SHA.
func (r *repo) commit(branch string, files map[string]string) string {
	r.t.Helper()
	if branch != "main" {
		if r.git(r.work, "branch", "--list", branch) == "" {
			r.git(r.work, "checkout", "-q", "-b", branch, "main")
		} else {
			r.git(r.work, "checkout", "-q", branch)
		}
	} else if exec.Command("git", "-C", r.work, "rev-parse", "--verify", "-q", "HEAD^{commit}").Run() == nil {
		r.git(r.work, "checkout", "-q", "main")
	}
	for name, body := range files {
		p := filepath.Join(r.work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git(r.work, "add", "-A")
	r.git(r.work, "commit", "-q", "--allow-empty", "-m", "change on "+branch)
	sha := r.git(r.work, "rev-parse", "HEAD")
	r.git(r.work, "push", "-q", "-f", "origin", "HEAD:refs/heads/"+branch)
	return sha
}

func (r *repo) deleteBranch(branch string) {
	r.t.Helper()
	r.git(r.work, "push", "-q", "origin", "--delete", branch)
}

// configYAML is a config for the local runtime running the prebuilt app.
func configYAML(dataDir, repoURL, app, extra string) string {
	return configYAMLRun(dataDir, repoURL, app, app+" serve", extra)
}

// configYAMLRun is configYAML with another run command.
func configYAMLRun(dataDir, repoURL, app, run, extra string) string {
	return fmt.Sprintf(`
dataDir: %q
domain: preview.test
forge:
  kind: git
  git: {url: %q, pollInterval: 1h, productionBranch: main}
runtime:
  kind: local
  local:
    run: %q
    healthPath: /healthz
    startTimeout: 20s
    maxRestarts: 3
database:
  kind: sqlite
migrate: %q
%s`, dataDir, repoURL, run, app+" migrate", extra)
}

// instance is previewd running in-process.
type instance struct {
	t      testing.TB
	d      *daemon.Daemon
	base   string
	cancel context.CancelFunc
	done   chan error
	client *http.Client
	once   sync.Once
}

func start(t testing.TB, yaml string) *instance {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), t.TempDir(), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, daemon.Options{Listener: ln, StopOnExit: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// A request may wake a preview (a process start, up to the wake
	// timeout's minute on a loaded machine): the client waits longer.
	in := &instance{t: t, d: d, base: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1), client: &http.Client{Timeout: 90 * time.Second}}
	go func() { in.done <- d.Run(ctx) }()
	t.Cleanup(in.stop)
	return in
}

// stop stops previewd and waits for it; stopping again does nothing.
func (in *instance) stop() {
	in.once.Do(func() {
		in.cancel()
		select {
		case <-in.done:
		case <-time.After(30 * time.Second):
			in.t.Error("previewd did not stop")
		}
	})
}

func (in *instance) sync() {
	in.t.Helper()
	resp, err := in.client.Post(in.base+"/api/v1/sync", "", nil)
	if err != nil {
		in.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		in.t.Fatalf("sync answered %s", resp.Status)
	}
}

// api is a client of previewd's HTTP API and preview proxy at base.
type api struct {
	t      testing.TB
	base   string
	client *http.Client
}

func (in *instance) api() *api { return &api{t: in.t, base: in.base, client: in.client} }

func (a *api) environment(key string) (env.Environment, int) {
	a.t.Helper()
	var e env.Environment
	code := a.getJSON("/api/v1/environments/"+key, &e)
	return e, code
}

func (a *api) getJSON(path string, v any) int {
	a.t.Helper()
	resp, err := a.client.Get(a.base + path)
	if err != nil {
		return 0 // not listening (yet): callers wait
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			a.t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// preview sends a request through the proxy with Host <key>.preview.test.
func (a *api) preview(key, method, path, body string) (int, string) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.base+path, strings.NewReader(body))
	req.Host = key + ".preview.test"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type health struct {
	Status, SHA, Key, Banner, File string
}

func (a *api) health(key string) (health, int) {
	a.t.Helper()
	code, body := a.preview(key, "GET", "/healthz", "")
	var h health
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			a.t.Fatalf("healthz of %s: %v: %s", key, err, body)
		}
	}
	return h, code
}

// eventually polls cond until it returns "" or the wait runs out, then
// fails with cond's last complaint.
func eventually(t testing.TB, wait time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", wait, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStatus waits until key has status at sha ("" for any).
func (a *api) waitStatus(key string, status env.Status, sha string) env.Environment {
	a.t.Helper()
	var e env.Environment
	eventually(a.t, 60*time.Second, func() string {
		var code int
		e, code = a.environment(key)
		if code != http.StatusOK {
			return fmt.Sprintf("%s: HTTP %d", key, code)
		}
		if e.Status != status || (sha != "" && e.SHA != sha) || e.DeletedAt != nil {
			return fmt.Sprintf("%s is %s at %s (want %s at %s): %s", key, e.Status, env.ShortSHA(e.SHA), status, env.ShortSHA(sha), e.Message)
		}
		return ""
	})
	return e
}

func (a *api) waitGone(key string) {
	a.t.Helper()
	eventually(a.t, 60*time.Second, func() string {
		var body struct {
			Environments []env.Environment `json:"environments"`
		}
		if code := a.getJSON("/api/v1/environments", &body); code != http.StatusOK {
			return fmt.Sprintf("listing: HTTP %d", code)
		}
		for _, e := range body.Environments {
			if e.Key == key {
				return fmt.Sprintf("%s still listed as %s: %s", key, e.Status, e.Message)
			}
		}
		return ""
	})
}

// processAlive reports whether pid runs (and is not a zombie).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z' && b[i+2] != 'X'
}

// appPIDs returns the pids of the process groups (their leaders) carrying
// PREVIEWD_ENV=key under dataDir's instance marker: one per running app.
func appPIDs(dataDir, key string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !processAlive(pid) || !groupLeader(pid) {
			continue
		}
		s := "\x00" + string(b)
		if strings.Contains(s, "\x00PREVIEWD_ENV="+key+"\x00") && strings.Contains(s, "\x00PREVIEWD_INSTANCE="+dataDir+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// groupLeader reports whether pid leads its process group.
func groupLeader(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 2 && f[2] == fmt.Sprint(pid)
}

// process runs previewd serve as its own process, so that tests can kill
// it with SIGKILL and start it again on the same config and data dir.
type process struct {
	t                testing.TB
	bin, cfg, logPth string
	dataDir          string
	api              *api
}

// newProcess writes a config for the prebuilt app and repoURL on a free
// port. Its log is printed if the test fails.
func newProcess(t testing.TB, repoURL string) *process {
	t.Helper()
	app, previewd := binaries(t)
	p := &process{t: t, bin: previewd, dataDir: t.TempDir(), cfg: filepath.Join(t.TempDir(), "previewd.yaml"), logPth: filepath.Join(t.TempDir(), "previewd.log")}
	port := freePort(t)
	yaml := configYAML(p.dataDir, repoURL, app, fmt.Sprintf("listen: 127.0.0.1:%d\n", port))
	if err := os.WriteFile(p.cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p.api = &api{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 5 * time.Second}}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(p.logPth)
			t.Logf("previewd's log:\n%s", b)
		}
	})
	return p
}

// start starts previewd serve.
func (p *process) start() *exec.Cmd {
	p.t.Helper()
	cmd := exec.Command(p.bin, "serve", "--config", p.cfg)
	logf, err := os.OpenFile(p.logPth, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	return cmd
}

// killApps kills the process groups of the keys' apps.
func (p *process) killApps(keys ...string) {
	for _, k := range keys {
		for _, pid := range appPIDs(p.dataDir, k) {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}
