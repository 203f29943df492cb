package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// fixture is a runtime running the test app for key "feat" from a real
// repository, behind a real HTTP server that proxies like previewd's.
type fixture struct {
	t    *testing.T
	r    *Runtime
	st   *store.Store
	repo string
	shas []string
	srv  *httptest.Server
}

func newFixture(t *testing.T, o Options, commits int) *fixture {
	t.Helper()
	repo, first := gitRepo(t)
	shas := []string{first}
	for i := 1; i < commits; i++ {
		if err := os.WriteFile(filepath.Join(repo, "hello.txt"), []byte(fmt.Sprintf("hello %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "x"}} {
			if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		out, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		shas = append(shas, strings.TrimSpace(string(out)))
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if o.Run == "" {
		o.Run = "exec '" + bin + "'"
	}
	o.HealthPath = "/healthz"
	o.StartTimeout = time.Minute
	// A test's own Run starts the app as "$LOCAL_TEST_BIN".
	o.Env = map[string]string{"LOCAL_TEST_APP": "1", "LOCAL_TEST_BIN": bin}
	r, st := newRuntime(t, o)
	f := &fixture{t: t, r: r, st: st, repo: repo, shas: shas}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h, ok := r.Proxy("feat")
		if !ok {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(func() {
		f.srv.Close()
		if err := r.Stop(context.Background(), "feat"); err != nil {
			t.Error(err)
		}
	})
	return f
}

func (f *fixture) release(sha string) *env.Release {
	return &env.Release{Source: env.Source{Key: "feat", Kind: env.KindBranch, Branch: "main", SHA: sha, Repo: f.repo, Ref: "refs/heads/main", Trusted: true}}
}

func (f *fixture) deploy(sha string) {
	f.t.Helper()
	ctx := context.Background()
	if err := f.r.Prepare(ctx, f.release(sha)); err != nil {
		f.t.Fatal(err)
	}
	if err := f.r.Deploy(ctx, f.release(sha)); err != nil {
		f.t.Fatal(err)
	}
}

// do sends a request through the proxy and returns the answer.
func do(client *http.Client, method, url, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func processItems(t *testing.T, st *store.Store) []string {
	t.Helper()
	items, err := st.Items(context.Background(), "feat")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, it := range env.Find(items, env.ItemProcess) {
		pids = append(pids, it.Name)
	}
	return pids
}

// TestDrainWaitsForInFlight: the process an update replaces is not
// stopped while a request it serves is in flight; new requests go to the
// new process at once; the old one is stopped as soon as the request is
// done.
func TestDrainWaitsForInFlight(t *testing.T) {
	f := newFixture(t, Options{}, 1)
	f.deploy(f.shas[0])
	old := f.r.current("feat")
	release := filepath.Join(t.TempDir(), "release")
	type answer struct {
		code int
		body string
		err  error
	}
	slow := make(chan answer, 1)
	go func() {
		code, body, err := do(f.srv.Client(), "GET", f.srv.URL+"/slow?file="+release, "")
		slow <- answer{code, body, err}
	}()
	waitFile(t, release+".started")

	deployed := make(chan error, 1)
	go func() { deployed <- f.r.Deploy(context.Background(), f.release(f.shas[0])) }()
	deadline := time.Now().Add(time.Minute)
	for f.r.current("feat") == old {
		if time.Now().After(deadline) {
			t.Fatal("the route did not switch to the new process")
		}
		time.Sleep(10 * time.Millisecond)
	}
	current := f.r.current("feat")
	if code, body, err := do(f.srv.Client(), "GET", f.srv.URL+"/healthz", ""); err != nil || code != 200 || !strings.HasSuffix(body, " "+strconv.Itoa(current.PID)) {
		t.Errorf("a new request went to %d %q (%v), want the new process %d", code, body, err, current.PID)
	}
	select {
	case err := <-deployed:
		t.Fatalf("Deploy returned (%v) while the old process served a request", err)
	case <-time.After(500 * time.Millisecond):
	}
	if !old.alive() || !sameProcess(old.PID, old.Start) {
		t.Fatal("the old process was stopped while it served a request")
	}

	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if a := <-slow; a.err != nil || a.code != 200 || a.body != strconv.Itoa(old.PID) {
		t.Errorf("the in-flight request got %d %q (%v), want 200 from %d", a.code, a.body, a.err, old.PID)
	}
	select {
	case err := <-deployed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Deploy did not return once the request was done")
	}
	if old.alive() {
		t.Error("the old process still runs after its last request")
	}
	if got := processItems(t, f.st); len(got) != 1 || got[0] != strconv.Itoa(current.PID) {
		t.Errorf("process inventory %v, want only %d", got, current.PID)
	}
}

// TestDrainTimeout: a request that never ends holds the replaced process
// for DrainTimeout at most.
func TestDrainTimeout(t *testing.T) {
	f := newFixture(t, Options{DrainTimeout: 500 * time.Millisecond, StopTimeout: time.Second}, 1)
	f.deploy(f.shas[0])
	old := f.r.current("feat")
	never := filepath.Join(t.TempDir(), "never")
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		do(f.srv.Client(), "GET", f.srv.URL+"/slow?file="+never, "") // cut off when the process goes
	}()
	waitFile(t, never+".started")
	start := time.Now()
	if err := f.r.Deploy(context.Background(), f.release(f.shas[0])); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if old.alive() {
		t.Error("the old process runs after the drain timeout")
	}
	if took > 30*time.Second {
		t.Errorf("Deploy took %s with a drain timeout of 500ms", took)
	}
	select {
	case <-slow:
	case <-time.After(30 * time.Second):
		t.Error("the request held on the stopped process did not end")
	}
	if got := processItems(t, f.st); len(got) != 1 || got[0] != strconv.Itoa(f.r.current("feat").PID) {
		t.Errorf("process inventory %v, want only the new process", got)
	}
}

// TestRetryOnDialFailure: a request sent to a process that cannot be
// reached is sent once more to the current process when that is safe
// (no body, idempotent method), and answered 502 otherwise.
func TestRetryOnDialFailure(t *testing.T) {
	f := newFixture(t, Options{}, 1)
	f.deploy(f.shas[0])
	live := f.r.current("feat")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	tests := map[string]struct {
		method, path, body string
		code               int
	}{
		"GET is sent again":        {"GET", "/healthz", "", http.StatusOK},
		"HEAD is sent again":       {"HEAD", "/healthz", "", http.StatusOK},
		"POST is not":              {"POST", "/echo", "ping", http.StatusBadGateway},
		"PUT with a body is not":   {"PUT", "/echo", "ping", http.StatusBadGateway},
		"DELETE without a body is": {"DELETE", "/healthz", "", http.StatusMethodNotAllowed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dead := newProc("feat", 0, port, f.shas[0], "", 0)
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(tt.method, "http://feat.preview.test"+tt.path, body)
			w := httptest.NewRecorder()
			f.r.serve(w, req, &held{key: "feat", procs: []*proc{dead}})
			if w.Code != tt.code {
				t.Errorf("%s %s answered %d %q, want %d", tt.method, tt.path, w.Code, w.Body, tt.code)
			}
			if tt.method == "GET" && !strings.HasSuffix(w.Body.String(), " "+strconv.Itoa(live.PID)) {
				t.Errorf("the retry was answered by %q, want the current process %d", w.Body, live.PID)
			}
		})
	}
	f.r.mu.Lock()
	n := live.inflight
	f.r.mu.Unlock()
	if n != 0 {
		t.Errorf("the current process holds %d requests after they are done", n)
	}
}

// TestUpdateUnderLoad rolls an environment between two commits many times
// while the machine is busy (a CPU hog on every core) and clients send
// requests through the proxy all the while: not one may fail.
func TestUpdateUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the machine")
	}
	f := newFixture(t, Options{}, 2)
	f.deploy(f.shas[0])
	for i := 0; i < goruntime.NumCPU(); i++ {
		hog := exec.Command("/bin/sh", "-c", "while :; do :; done")
		hog.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := hog.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			killGroup(hog.Process.Pid, syscall.SIGKILL)
			_ = hog.Wait() // killed: its status says so
		})
	}
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		requests int
	)
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: time.Minute}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				method, path, body, want := "GET", "/healthz", "", ""
				if i%2 == 1 {
					method, path, body, want = "POST", "/echo", "ping "+strconv.Itoa(i), "ping "+strconv.Itoa(i)
				}
				code, got, err := do(client, method, f.srv.URL+path, body)
				mu.Lock()
				requests++
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("%s %s: %v", method, path, err))
				case code != http.StatusOK || (want != "" && got != want):
					failures = append(failures, fmt.Sprintf("%s %s: %d %q", method, path, code, got))
				}
				mu.Unlock()
			}
		}()
	}
	const updates = 12
	for i := 1; i <= updates; i++ {
		sha := f.shas[i%2]
		f.deploy(sha)
		if code, body, err := do(f.srv.Client(), "GET", f.srv.URL+"/healthz", ""); err != nil || code != 200 || !strings.HasPrefix(body, sha+" ") {
			t.Fatalf("update %d: serving %d %q (%v), want %s", i, code, body, err, env.ShortSHA(sha))
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests during %d updates", requests, updates)
	if requests < updates {
		t.Errorf("only %d requests during %d updates: the load did not run", requests, updates)
	}
	for i, msg := range failures {
		if i == 10 {
			t.Errorf("... and %d more", len(failures)-10)
			break
		}
		t.Errorf("request failed during an update: %s", msg)
	}
}
