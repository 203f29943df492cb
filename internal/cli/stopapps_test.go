package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that serve may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// appProcesses returns the pids of the processes that carry the marker of
// the local runtime with data dir dir: the apps, and what runs in their
// process groups.
func appProcesses(dir string) []int {
	marker := []byte("PREVIEWD_INSTANCE=" + dir + "\x00")
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(append(b, 0), marker) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
				continue // a zombie holds nothing
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// TestServeStopAppsOnExit: serve with --stop-apps-on-exit, ended as
// SIGTERM ends it (its context), stops every process of every app (a web
// process and a worker) and says how many apps it stopped; without it,
// they keep running and the log says they are left for adoption. The
// config's runtime.local.stopAppsOnExit does what the flag does.
func TestServeStopAppsOnExit(t *testing.T) {
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("needs /proc")
	}
	app := exampleApp(t)
	repo := gitRepo(t)
	for name, tc := range map[string]struct {
		flags []string
		key   string // runtime.local.stopAppsOnExit
		stop  bool
	}{
		"flag":   {flags: []string{"--stop-apps-on-exit"}, key: "false", stop: true},
		"config": {key: "true", stop: true},
		"leave":  {key: "false"},
	} {
		t.Run(name, func(t *testing.T) {
			dir, err := filepath.Abs(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, fmt.Sprintf(`listen: "127.0.0.1:0"
dataDir: %q
forge: {kind: git, git: {url: %q, pollInterval: 1h, productionBranch: main}}
database: {kind: sqlite}
migrate: %q
runtime:
  kind: local
  local:
    startTimeout: 20s
    stopAppsOnExit: %s
    processes:
      web: {run: %q, http: true, healthPath: /healthz}
      worker: {run: "echo worker of $PREVIEW_KEY; exec sleep 300"}
`, dir, repo, app+" migrate", tc.key, app+" serve"))
			t.Cleanup(func() {
				for _, pid := range appProcesses(dir) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			code := make(chan int, 1)
			go func() { code <- Run(ctx, append([]string{"serve", "--config", cfg}, tc.flags...), &out, &errb) }()
			deadline := time.Now().Add(60 * time.Second)
			for !strings.Contains(errb.String(), "msg=ready env=production") {
				if time.Now().After(deadline) || strings.Contains(errb.String(), "reconcile stopped") {
					t.Fatalf("production was not ready:\n%s", errb.String())
				}
				select {
				case c := <-code:
					t.Fatalf("serve exited %d:\n%s", c, errb.String())
				case <-time.After(20 * time.Millisecond):
				}
			}
			before := appProcesses(dir)
			// The web app, and the worker's shell, awk and sleep.
			if len(before) < 4 {
				t.Fatalf("app processes %v, want the web app and the worker's", before)
			}
			cancel() // what SIGTERM does to serve (main's signal.NotifyContext)
			select {
			case c := <-code:
				if c != 0 {
					t.Fatalf("serve exited %d:\n%s", c, errb.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatal("serve did not exit within 60s")
			}
			logs := errb.String()
			left := appProcesses(dir)
			if tc.stop {
				if len(left) != 0 {
					t.Errorf("processes %v still run after serve --stop-apps-on-exit ended", left)
				}
				if !strings.Contains(logs, `msg="stopped apps on exit" apps=1 failed=0`) {
					t.Errorf("no stopped line:\n%s", logs)
				}
				return
			}
			if len(left) != len(before) {
				t.Errorf("processes %v after serve ended, want %v left running", left, before)
			}
			if !strings.Contains(logs, `msg="leaving apps running for adoption by the next previewd" apps=1`) {
				t.Errorf("no leaving line:\n%s", logs)
			}
		})
	}
}
