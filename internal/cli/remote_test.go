package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/client"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/daemon"
	"github.com/previewd/previewd/internal/env"
)

var (
	appOnce sync.Once
	appBin  string
	appErr  error
)

// exampleApp builds the example app once per test process.
func exampleApp(t *testing.T) string {
	t.Helper()
	appOnce.Do(func() {
		dir, err := os.MkdirTemp("", "previewd-cli-app-")
		if err != nil {
			appErr = err
			return
		}
		_, file, _, _ := goruntime.Caller(0)
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "app"), "./examples/markdown-editor")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			appErr = fmt.Errorf("building the example app: %w\n%s", err, out)
		}
		appBin = filepath.Join(dir, "app")
	})
	if appErr != nil {
		t.Fatal(appErr)
	}
	return appBin
}

// gitRepo makes a bare repository with main and the given branches.
func gitRepo(t *testing.T, branches ...string) string {
	t.Helper()
	dir := t.TempDir()
	bare, work := filepath.Join(dir, "origin.git"), filepath.Join(dir, "work")
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git(dir, "init", "-q", "--bare", "--initial-branch=main", bare)
	git(dir, "init", "-q", "--initial-branch=main", work)
	git(work, "commit", "-q", "--allow-empty", "-m", "main")
	git(work, "remote", "add", "origin", bare)
	git(work, "push", "-q", "origin", "main")
	for _, b := range branches {
		git(work, "checkout", "-q", "-b", b, "main")
		git(work, "commit", "-q", "--allow-empty", "-m", b)
		git(work, "push", "-q", "origin", b)
	}
	return bare
}

// startPreviewd runs the real daemon in-process (git forge, local
// runtime, SQLite, the prebuilt example app) and returns its base URL.
func startPreviewd(t *testing.T, yaml string) string {
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
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("previewd did not stop")
		}
	})
	return "http://" + ln.Addr().String()
}

// eventually polls cond until it returns "" or the wait runs out.
func eventually(t *testing.T, wait time.Duration, cond func() string) {
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

// getJSON runs `previewd get KEY -o json` and decodes it.
func getJSON(t *testing.T, key string) (client.Environment, int, string) {
	t.Helper()
	code, out, errs := run(t, "get", key, "-o", "json")
	var e client.Environment
	if code == 0 {
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("get -o json: %v\n%s", err, out)
		}
	}
	return e, code, errs
}

func waitEnv(t *testing.T, key string, cond func(client.Environment) bool, what string) client.Environment {
	t.Helper()
	var e client.Environment
	eventually(t, 60*time.Second, func() string {
		var code int
		var errs string
		e, code, errs = getJSON(t, key)
		if code != 0 || !cond(e) {
			return fmt.Sprintf("%s: want %s; exit %d %s, status %s: %s", key, what, code, errs, e.Status, e.Message)
		}
		return ""
	})
	return e
}

func statusIs(s env.Status) func(client.Environment) bool {
	return func(e client.Environment) bool { return e.Status == s && e.DeletedAt == nil }
}

const (
	adminToken  = "admin-0123456789abcdef"
	viewerToken = "viewer-0123456789abcdef"
)

// TestAgainstPreviewd runs the commands against a real previewd with auth
// tokens: a branch whose migration fails until a file goes, then its
// redeploy until ready, the tables and JSON, the lifecycle actions as get
// shows them, down and up, unknown keys and usage errors.
func TestAgainstPreviewd(t *testing.T) {
	app := exampleApp(t)
	flags := t.TempDir()
	key := "feature-x"
	failFlag := filepath.Join(flags, "fail-"+key)
	if err := os.WriteFile(failFlag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := startPreviewd(t, fmt.Sprintf(`
dataDir: %q
domain: preview.test
forge:
  kind: git
  git: {url: %q, pollInterval: 1h, productionBranch: main}
runtime:
  kind: local
  local: {run: %q, healthPath: /healthz, startTimeout: 20s}
database: {kind: sqlite}
migrate: 'if test -e %s/fail-$PREVIEW_KEY; then echo "no such table: notes" >&2; exit 3; fi; %s migrate'
lifecycle: {ttl: 1h}
auth:
  tokens:
    - {name: ci, token: %s, role: admin}
    - {name: grafana, token: %s, role: viewer}
`, t.TempDir(), gitRepo(t, key), app+" serve", flags, app, adminToken, viewerToken))

	t.Setenv(EnvServer, base)
	t.Setenv(EnvToken, "")
	t.Run("token", func(t *testing.T) {
		eventually(t, 30*time.Second, func() string {
			if code, _, errs := run(t, "ls"); code != 1 || !strings.Contains(errs, "401 Unauthorized") {
				return fmt.Sprintf("ls without a token: exit %d, %q; want 1 and 401", code, errs)
			}
			return ""
		})
		code, out, errs := run(t, "ls", "--token", viewerToken)
		if code != 0 || !strings.HasPrefix(out, "KEY") || !strings.Contains(errs, "warning: --token is visible") || !strings.Contains(errs, EnvToken) {
			t.Errorf("ls --token: exit %d, %q, %q", code, out, errs)
		}
		t.Setenv(EnvToken, viewerToken)
		if code, _, errs := run(t, "ls"); code != 0 || errs != "" {
			t.Errorf("ls with %s: exit %d, %q", EnvToken, code, errs)
		}
		if code, _, errs := run(t, "redeploy", "production", "--no-wait"); code != 1 || !strings.Contains(errs, "grafana is viewer; this needs operator") {
			t.Errorf("redeploy as a viewer: exit %d, %q", code, errs)
		}
	})
	t.Setenv(EnvToken, adminToken)

	prod := waitEnv(t, "production", statusIs(env.StatusReady), "ready")
	failed := waitEnv(t, key, statusIs(env.StatusFailed), "failed (its migration)")
	if !strings.Contains(failed.Message, "no such table") {
		t.Errorf("the failure's message lacks the migration's output: %q", failed.Message)
	}

	t.Run("ls", func(t *testing.T) {
		code, out, errs := run(t, "ls")
		t.Logf("ls:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 3 {
			t.Fatalf("ls: exit %d, %q %q", code, out, errs)
		}
		if f := strings.Fields(lines[0]); strings.Join(f, " ") != "KEY STATUS SHA AGE LAST-ACTIVITY URL" {
			t.Errorf("header %q", lines[0])
		}
		rows := map[string][]string{}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			rows[f[0]] = f
		}
		if f := rows["production"]; len(f) != 6 || f[1] != "ready" || f[2] != env.ShortSHA(prod.SHA) || !strings.HasSuffix(f[3], "s") || f[5] != prod.URL {
			t.Errorf("production row %q", f)
		}
		if f := rows[key]; len(f) != 6 || f[1] != "failed" {
			t.Errorf("%s row %q", key, f)
		}
		code, out, _ = run(t, "ls", "-o", "json")
		var l client.List
		if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil || len(l.Environments) != 2 || l.Source == nil {
			t.Errorf("ls -o json: exit %d, %v: %s", code, err, out)
		}
	})

	t.Run("get", func(t *testing.T) {
		code, out, errs := run(t, "get", key)
		t.Logf("get:\n%s", out)
		for _, want := range []string{"key:", key, "status:", "failed", "branch:", "url:", "http://" + key + ".preview.test", "recent events:", "no such table: notes"} {
			if !strings.Contains(out, want) {
				t.Errorf("get lacks %q:\n%s", want, out)
			}
		}
		if code != 0 || errs != "" {
			t.Errorf("get: exit %d, %q", code, errs)
		}
		if code, out, _ := run(t, "logs", key, "-n", "50"); code != 0 || !strings.Contains(out, "no such table: notes") {
			t.Errorf("logs: exit %d, %q", code, out)
		}
	})

	t.Run("redeploy fails again", func(t *testing.T) {
		code, out, errs := run(t, "redeploy", key)
		t.Logf("redeploy:\n%s%s", out, errs)
		if code != 1 || !strings.Contains(errs, "previewd: "+key+" failed: ") || !strings.Contains(out, "no such table: notes") || !strings.Contains(out, "  FAILED    "+key) {
			t.Errorf("redeploy of a still failing SHA: exit %d\n%s\n%s", code, out, errs)
		}
	})

	t.Run("redeploy until ready", func(t *testing.T) {
		if err := os.Remove(failFlag); err != nil {
			t.Fatal(err)
		}
		code, out, errs := run(t, "redeploy", key)
		t.Logf("redeploy:\n%s%s", out, errs)
		if code != 0 || !strings.HasPrefix(out, "redeploy of "+key+" accepted\n") || !strings.Contains(out, "  ready     "+key+"      http://"+key+".preview.test") {
			t.Errorf("redeploy: exit %d\n%s\n%s", code, out, errs)
		}
		if e, _, _ := getJSON(t, key); e.Status != env.StatusReady {
			t.Errorf("after redeploy %s is %s", key, e.Status)
		}
		// Nothing to do for a ready one: the state at once.
		if code, out, _ := run(t, "redeploy", key); code != 0 || !strings.Contains(out, "  ready     "+key) {
			t.Errorf("redeploy of a ready one: exit %d %q", code, out)
		}
	})

	t.Run("reset-db", func(t *testing.T) {
		code, out, errs := run(t, "reset-db", key)
		if code != 0 || !strings.Contains(out, "reset-db of "+key+" accepted") {
			t.Fatalf("reset-db: exit %d %q %q", code, out, errs)
		}
		waitEnv(t, key, func(e client.Environment) bool {
			for _, ev := range e.Events {
				if ev.Reason == "DatabaseReset" || ev.Reason == "DatabaseResetFailed" {
					return true
				}
			}
			return false
		}, "its database reset")
		e, _, _ := getJSON(t, key)
		for _, ev := range e.Events {
			if ev.Reason == "DatabaseResetFailed" {
				t.Errorf("reset-db failed: %s", ev.Message)
			}
		}
		if e.Status != env.StatusReady {
			t.Errorf("after reset-db %s is %s", key, e.Status)
		}
		if code, _, errs := run(t, "reset-db", "production"); code != 1 || !strings.Contains(errs, "production") {
			t.Errorf("reset-db production: exit %d %q", code, errs)
		}
	})

	t.Run("db-tier", func(t *testing.T) {
		// SQLite has one tier: the server says so; a bad tier is a usage
		// error before anything is sent.
		if code, out, errs := run(t, "db-tier", key, "clone"); code != 1 || !strings.Contains(errs, "this database has one tier") {
			t.Errorf("db-tier on SQLite: exit %d %q %q", code, out, errs)
		}
		if code, _, errs := run(t, "db-tier", key, "gold"); code != 2 || !strings.Contains(errs, `TIER: "gold"`) {
			t.Errorf("db-tier gold: exit %d %q", code, errs)
		}
	})

	t.Run("extend", func(t *testing.T) {
		code, out, errs := run(t, "extend", key, "5d")
		if code != 0 || !strings.Contains(out, key+" now expires at ") {
			t.Fatalf("extend: exit %d %q %q", code, out, errs)
		}
		// The answer says the new expiry; the reconciler saves it.
		waitEnv(t, key, func(e client.Environment) bool {
			return e.ExpiresAt != nil && e.ExpiresAt.After(time.Now().Add(4*24*time.Hour))
		}, "expiring in 5d")
		if code, out, _ := run(t, "get", key); code != 0 || !strings.Contains(out, "expires:") {
			t.Errorf("get after extend: %q", out)
		}
		if code, _, errs := run(t, "extend", key, "40d"); code != 1 || !strings.Contains(errs, "30d") {
			t.Errorf("extend 40d: exit %d %q", code, errs)
		}
	})

	t.Run("sleep and wake", func(t *testing.T) {
		if code, out, errs := run(t, "sleep", key); code != 0 || !strings.Contains(out, "sleep of "+key+" accepted") {
			t.Fatalf("sleep: exit %d %q %q", code, out, errs)
		}
		waitEnv(t, key, statusIs(env.StatusSleeping), "sleeping")
		code, out, errs := run(t, "wake", key)
		if code != 0 || !strings.Contains(out, "wake of "+key+" accepted") || !strings.Contains(out, "  ready     "+key) {
			t.Errorf("wake: exit %d\n%s\n%s", code, out, errs)
		}
		if e, _, _ := getJSON(t, key); e.Status != env.StatusReady {
			t.Errorf("after wake %s is %s", key, e.Status)
		}
	})

	t.Run("down and up", func(t *testing.T) {
		if code, out, errs := run(t, "down", key); code != 0 || !strings.Contains(out, "down of "+key+" accepted") {
			t.Fatalf("down: exit %d %q %q", code, out, errs)
		}
		waitEnv(t, key, func(e client.Environment) bool { return e.Down && e.DeletedAt != nil }, "down and removed")
		if code, out, _ := run(t, "get", key); code != 0 || !strings.Contains(out, "until previewd up "+key) {
			t.Errorf("get of a down one: exit %d %q", code, out)
		}
		if code, _, errs := run(t, "down", "production"); code != 1 || !strings.Contains(errs, "409 Conflict: production cannot be put down") {
			t.Errorf("down production: exit %d %q", code, errs)
		}
		if code, out, errs := run(t, "up", key); code != 0 || !strings.Contains(out, "up of "+key+" accepted") {
			t.Fatalf("up: exit %d %q %q", code, out, errs)
		}
		waitEnv(t, key, func(e client.Environment) bool { return !e.Down && e.Status == env.StatusReady && e.DeletedAt == nil }, "up and ready")
	})

	t.Run("unknown key", func(t *testing.T) {
		for _, args := range [][]string{{"get", "nope"}, {"logs", "nope"}, {"redeploy", "nope"}, {"wake", "nope"}, {"sleep", "nope"}, {"extend", "nope", "3d"}, {"down", "nope"}, {"up", "nope"}, {"open", "nope"}} {
			if code, out, errs := run(t, args...); code != 1 || errs != "previewd: no environment nope\n" || out != "" {
				t.Errorf("%v: exit %d, %q %q", args, code, out, errs)
			}
		}
	})

	t.Run("open", func(t *testing.T) {
		if code, out, _ := run(t, "open", "production"); code != 0 || out != prod.URL+"\n" {
			t.Errorf("open: exit %d %q, want the URL", code, out)
		}
	})

	t.Run("completion", func(t *testing.T) {
		code, out, _ := run(t, "__complete", "get", "")
		if code != 0 || !strings.Contains(out, "production\tready") || !strings.Contains(out, key+"\t") {
			t.Errorf("completion of get's key: exit %d %q", code, out)
		}
		if code, out, _ := run(t, "completion", "bash"); code != 0 || !strings.Contains(out, "previewd") {
			t.Errorf("completion bash: exit %d", code)
		}
	})
}

// TestUsage: wrong arguments, unknown flags and bad values exit 2 and
// never reach a server.
func TestUsage(t *testing.T) {
	t.Setenv(EnvServer, "http://127.0.0.1:1")
	for _, args := range [][]string{
		{"get"}, {"get", "a", "b"}, {"logs"}, {"redeploy"}, {"extend", "pr-1"}, {"extend", "pr-1", "soon"}, {"extend", "pr-1", "0s"},
		{"ls", "-o", "yaml"}, {"get", "pr-1", "-o", "xml"}, {"ls", "--bogus"}, {"logs", "pr-1", "-n", "0"}, {"logs", "pr-1", "-n", "x"},
		{"ls", "extra"}, {"get", "pr-1", "--server", "ftp://example.invalid"}, {"frobnicate"}, {"wake", "pr-1", "--timeout", "soon"}, {"redeploy", "pr-1", "--timeout", "0s"},
	} {
		code, _, errs := run(t, args...)
		if code != 2 || !strings.Contains(errs, "--help' for usage") || strings.Contains(errs, "asking previewd") {
			t.Errorf("%v: exit %d, %q; want 2", args, code, errs)
		}
	}
	// Nothing listening: an error, exit 1, one line.
	code, _, errs := run(t, "get", "pr-1")
	if code != 1 || !strings.HasPrefix(errs, "previewd: asking previewd at http://127.0.0.1:1: ") || strings.Count(errs, "\n") != 1 {
		t.Errorf("nothing listening: exit %d %q", code, errs)
	}
}

// TestServerAddress: --server, else --config's listen, else
// PREVIEWD_SERVER, else the default.
func TestServerAddress(t *testing.T) {
	cfg := writeConfig(t, "listen: \":9090\"\nforge: {git: {url: /tmp/repo}}\nauth: {anonymous: viewer}\n")
	for name, tc := range map[string]struct {
		env, server, config, want string
	}{
		"default":        {want: "http://127.0.0.1:8080"},
		"env":            {env: "https://previewd.example.com/", want: "https://previewd.example.com"},
		"env, no scheme": {env: "previewd.example.com:8080", want: "http://previewd.example.com:8080"},
		"flag over env":  {env: "http://a.example", server: "http://b.example", want: "http://b.example"},
		"config":         {env: "http://a.example", config: cfg, want: "http://127.0.0.1:9090"},
		"flag wins":      {server: "http://b.example", config: cfg, want: "http://b.example"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(EnvServer, tc.env)
			r := &remote{server: tc.server, config: tc.config}
			got, err := r.address(newGet())
			if err != nil || got != tc.want {
				t.Errorf("address = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	for listen, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080", ":8080": "http://127.0.0.1:8080", "0.0.0.0:80": "http://127.0.0.1:80",
		"[::]:8080": "http://127.0.0.1:8080", "[::1]:8080": "http://[::1]:8080", "previewd.internal:8080": "http://previewd.internal:8080",
	} {
		if got := listenURL(listen); got != want {
			t.Errorf("listenURL(%q) = %q, want %q", listen, got, want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 45 * time.Second: "45s", 12 * time.Minute: "12m", 5 * time.Hour: "5h", 47 * time.Hour: "47h", 72 * time.Hour: "3d",
	} {
		at := now.Add(-d)
		if got := ago(&at, now); got != want {
			t.Errorf("ago(%s) = %q, want %q", d, got, want)
		}
	}
	if got := ago(nil, now); got != "-" {
		t.Errorf("ago(nil) = %q", got)
	}
}
