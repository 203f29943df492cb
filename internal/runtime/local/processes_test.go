package local

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// workerRun is a worker that says what it got and runs until stopped.
const workerRun = `echo "worker up sha=$PREVIEW_SHA db=$DATABASE_URL app=$LOCAL_TEST_APP port=$PORT"; exec sleep 300`

// newProcsFixture is a fixture whose environment has two processes: the
// test app ("web", routed) and worker.
func newProcsFixture(t *testing.T, worker string, exits chan<- string) *fixture {
	t.Helper()
	return newFixture(t, Options{
		Processes: []Process{
			{Name: "web", Run: `exec "$LOCAL_TEST_BIN"`, HTTP: true},
			{Name: "worker", Run: worker},
		},
		OnExit: func(key string) {
			select {
			case exits <- key:
			default:
			}
		},
	}, 1)
}

func (f *fixture) releaseWithDB(sha string) *env.Release {
	rel := f.release(sha)
	rel.Vars = map[string]string{"DATABASE_URL": "sqlite:/data/feat.db"}
	return rel
}

// eventually polls cond until it returns "" or 20s are over.
func eventually(t *testing.T, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) worker() *proc {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	return f.r.workers["feat"]["worker"]
}

var workerUp = regexp.MustCompile(`(?m)^\[worker\] worker up sha=(\w+) db=(\S+) app=1 port=(\d+)$`)

// TestProcesses: an environment of two processes runs both with its
// variables, each with a port of its own; the web one answers through
// the proxy; the worker's lines are in the log and the followed log,
// tagged "[worker] "; a worker killed with its group is reported, makes
// the environment not run, and the restart Deploy does starts only it
// again while the web one serves on.
func TestProcesses(t *testing.T) {
	exits := make(chan string, 16)
	f := newProcsFixture(t, workerRun, exits)
	ctx := context.Background()
	sha := f.shas[0]
	if err := f.r.Prepare(ctx, f.releaseWithDB(sha)); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Deploy(ctx, f.releaseWithDB(sha)); err != nil {
		t.Fatal(err)
	}
	web := f.r.current("feat")
	code, body, err := do(f.srv.Client(), "GET", f.srv.URL+"/healthz", "")
	if err != nil || code != 200 || body != sha+" "+strconv.Itoa(web.PID) {
		t.Fatalf("through the proxy: %d %q %v", code, body, err)
	}
	var logs string
	eventually(t, func() string {
		logs, _ = f.r.Logs(ctx, "feat", 50)
		if !workerUp.MatchString(logs) {
			return "the worker's tagged line is not in the log:\n" + logs
		}
		return ""
	})
	m := workerUp.FindStringSubmatch(logs)
	if m[1] != sha || m[2] != "sqlite:/data/feat.db" {
		t.Errorf("the worker got sha %q, DATABASE_URL %q", m[1], m[2])
	}
	if port, _ := strconv.Atoi(m[3]); port == 0 || port == web.Port {
		t.Errorf("the worker's PORT %d, want one of its own (web has %d)", port, web.Port)
	}
	_, lines, done := follow(t, f.r, "feat", 50)
	for {
		l := next(t, lines, done)
		if strings.HasPrefix(l.Text, "[worker] worker up") {
			if l.Step != "run" {
				t.Errorf("followed worker line %q has step %q, want run", l.Text, l.Step)
			}
			break
		}
	}
	if running, got, err := f.r.Running(ctx, "feat"); !running || got != sha || err != nil {
		t.Fatalf("Running = %v %s %v", running, got, err)
	}
	if items := processItems(t, f.st); len(items) != 2 {
		t.Fatalf("process items %v, want web and worker", items)
	}

	w := f.worker()
	if err := syscall.Kill(-w.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case key := <-exits:
		if key != "feat" {
			t.Fatalf("OnExit(%q)", key)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker's exit was not reported")
	}
	if running, _, _ := f.r.Running(ctx, "feat"); running {
		t.Error("Running with the worker gone")
	}
	if code, body, err := do(f.srv.Client(), "GET", f.srv.URL+"/healthz", ""); err != nil || code != 200 || body != sha+" "+strconv.Itoa(web.PID) {
		t.Errorf("web with the worker gone: %d %q %v", code, body, err)
	}
	// The reconciler's restart: Deploy of the same release.
	if err := f.r.Deploy(ctx, f.releaseWithDB(sha)); err != nil {
		t.Fatal(err)
	}
	w2 := f.worker()
	if w2 == nil || w2.PID == w.PID || !w2.alive() {
		t.Fatalf("worker after the restart: %+v (was pid %d)", w2, w.PID)
	}
	if f.r.current("feat") != web || !web.alive() {
		t.Error("the restart of the worker replaced the web process")
	}
	if running, _, _ := f.r.Running(ctx, "feat"); !running {
		t.Error("not Running after the worker's restart")
	}
	eventually(t, func() string {
		logs, _ = f.r.Logs(ctx, "feat", 50)
		if n := len(workerUp.FindAllString(logs, -1)); n != 2 {
			return "want two tagged worker starts in the log, have:\n" + logs
		}
		return ""
	})
	items := processItems(t, f.st)
	if len(items) != 2 || !strings.Contains(strings.Join(items, " "), strconv.Itoa(w2.PID)) {
		t.Errorf("process items %v, want web %d and worker %d", items, web.PID, w2.PID)
	}

	// A restart whose variables changed (a database tier) is a whole
	// deploy: the web process is replaced too.
	if err := syscall.Kill(-w2.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if running, _, _ := f.r.Running(ctx, "feat"); running {
			return "Running with the worker killed again"
		}
		return ""
	})
	rel := f.releaseWithDB(sha)
	rel.Vars["DATABASE_URL"] = "postgres://db/feat"
	if err := f.r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if p := f.r.current("feat"); p == web || p == nil || !p.alive() {
		t.Errorf("web after a restart with other variables: %+v, want a new process", p)
	}
	if w3 := f.worker(); w3 == nil || w3 == w2 || !w3.alive() {
		t.Errorf("worker after a restart with other variables: %+v", w3)
	}
	if items := processItems(t, f.st); len(items) != 2 {
		t.Errorf("process items %v after the whole deploy, want two", items)
	}
}

// TestProcessesAdopted: a new runtime on the same directory and
// inventory (previewd restarted) adopts both processes, the worker's
// whole group with them.
func TestProcessesAdopted(t *testing.T) {
	f := newProcsFixture(t, workerRun, nil)
	ctx := context.Background()
	f.deploy(f.shas[0])
	web, w := f.r.current("feat"), f.worker()
	members, _ := groupMembers(w.PID)
	if len(members) < 3 {
		t.Fatalf("worker group %d has %v, want the shell, awk and sleep", w.PID, members)
	}
	r2, err := New(f.r.o, f.st)
	if err != nil {
		t.Fatal(err)
	}
	items, err := f.st.Items(ctx, "feat")
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Recover(ctx, map[string][]env.Item{"feat": items}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r2.Stop(context.Background(), "feat"); err != nil {
			t.Error(err)
		}
	})
	if p := r2.current("feat"); p == nil || p.PID != web.PID {
		t.Fatalf("adopted web %+v, want pid %d", p, web.PID)
	}
	r2.mu.Lock()
	aw := r2.workers["feat"]["worker"]
	r2.mu.Unlock()
	if aw == nil || aw.PID != w.PID {
		t.Fatalf("adopted worker %+v, want pid %d", aw, w.PID)
	}
	if running, sha, _ := r2.Running(ctx, "feat"); !running || sha != f.shas[0] {
		t.Errorf("Running after adoption: %v %s", running, sha)
	}
	if left, _ := groupMembers(w.PID); len(left) != len(members) {
		t.Errorf("worker group after adoption: %v, was %v", left, members)
	}
	if items := processItems(t, f.st); len(items) != 2 {
		t.Errorf("process items after adoption: %v", items)
	}
}

// TestProcessesSleepWake: the meter sums both groups; sleep stops both
// (every process of each group) and forgets them; wake starts both.
func TestProcessesSleepWake(t *testing.T) {
	f := newProcsFixture(t, workerRun, nil)
	ctx := context.Background()
	f.deploy(f.shas[0])
	web, w := f.r.current("feat"), f.worker()
	u, err := f.r.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(web.PID) + ":" + strconv.FormatUint(web.Start, 10) + "," + strconv.Itoa(w.PID) + ":" + strconv.FormatUint(w.Start, 10)
	if s := u["feat"]; s.Instance != want || s.MemoryBytes <= 0 {
		t.Errorf("Usage = %+v, want instance %s", s, want)
	}
	members := map[int][]int{}
	for _, p := range []*proc{web, w} {
		members[p.PID], _ = groupMembers(p.PID)
	}
	if err := f.r.Sleep(ctx, "feat"); err != nil {
		t.Fatal(err)
	}
	for leader, ms := range members {
		if left, _ := groupMembers(leader); len(left) != 0 {
			t.Errorf("group %d (of %v) still has %v after sleep", leader, ms, left)
		}
	}
	if running, _, _ := f.r.Running(ctx, "feat"); running {
		t.Error("Running after sleep")
	}
	if items := processItems(t, f.st); len(items) != 0 {
		t.Errorf("process items after sleep: %v", items)
	}
	f.deploy(f.shas[0])
	web2, w2 := f.r.current("feat"), f.worker()
	if web2 == nil || w2 == nil || web2.PID == web.PID || w2.PID == w.PID || !web2.alive() || !w2.alive() {
		t.Fatalf("after wake: web %+v worker %+v", web2, w2)
	}
	if running, _, _ := f.r.Running(ctx, "feat"); !running {
		t.Error("not Running after wake")
	}
	if items := processItems(t, f.st); len(items) != 2 {
		t.Errorf("process items after wake: %v", items)
	}
}

// TestSplitProcesses: Run alone is one HTTP process "web"; processes need
// exactly one HTTP and distinct names.
func TestSplitProcesses(t *testing.T) {
	web, others, err := splitProcesses("./app", nil)
	if err != nil || web != (Process{Name: "web", Run: "./app", HTTP: true}) || others != nil {
		t.Errorf("shorthand: %+v %+v %v", web, others, err)
	}
	for name, ps := range map[string][]Process{
		"no http":  {{Name: "a", Run: "x"}},
		"two http": {{Name: "a", Run: "x", HTTP: true}, {Name: "b", Run: "y", HTTP: true}},
		"twice":    {{Name: "a", Run: "x", HTTP: true}, {Name: "a", Run: "y"}},
	} {
		if _, _, err := splitProcesses("", ps); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestWorkerStopsGracefully: a worker told to stop (SIGTERM to its group)
// gets to finish: what it writes as it stops is in the log, tagged, and
// it is not killed before.
func TestWorkerStopsGracefully(t *testing.T) {
	f := newProcsFixture(t, `trap 'echo draining the queue; exit 0' TERM; echo ready; while :; do sleep 0.05; done`, nil)
	ctx := context.Background()
	f.deploy(f.shas[0])
	eventually(t, func() string {
		if logs, _ := f.r.Logs(ctx, "feat", 20); !strings.Contains(logs, "[worker] ready") {
			return "the worker did not start:\n" + logs
		}
		return ""
	})
	if err := f.r.Stop(ctx, "feat"); err != nil {
		t.Fatal(err)
	}
	logs, _ := f.r.Logs(ctx, "feat", 20)
	if !strings.Contains(logs, "[worker] draining the queue") {
		t.Errorf("the worker's last words are not in the log:\n%s", logs)
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.TrimSpace(l) == "Terminated" {
			t.Errorf("an untagged shell status line in the log:\n%s", logs)
		}
	}
}

// TestProcessesFromTheCommit: processes the commit's spec declares (the
// repository's .previewd.yaml) run instead of the options' one process,
// with its own worker, and the next commit without them runs the options'
// again, its worker stopped.
func TestProcessesFromTheCommit(t *testing.T) {
	f := newFixture(t, Options{}, 2)
	ctx := context.Background()
	rel := f.releaseWithDB(f.shas[0])
	rel.Spec = &env.AppSpec{Processes: map[string]env.AppProcess{
		"web":    {Run: `exec "$LOCAL_TEST_BIN"`, HTTP: true, HealthPath: "/healthz"},
		"worker": {Run: workerRun},
	}}
	if err := f.r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if logs, _ := f.r.Logs(ctx, "feat", 50); !workerUp.MatchString(logs) {
			return "the commit's worker did not start:\n" + logs
		}
		return ""
	})
	if running, _, err := f.r.Running(ctx, "feat"); !running || err != nil {
		t.Fatalf("Running = %v %v", running, err)
	}
	w := f.worker()
	if w == nil {
		t.Fatal("no worker")
	}
	// A new previewd on the same data, which only knows the options'
	// one process, adopts the commit's worker as the release recorded it,
	// and sees it missing once it dies.
	r2, err := New(f.r.o, f.st)
	if err != nil {
		t.Fatal(err)
	}
	items, err := f.st.Items(ctx, "feat")
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Recover(ctx, map[string][]env.Item{"feat": items}); err != nil {
		t.Fatal(err)
	}
	r2.mu.Lock()
	aw := r2.workers["feat"]["worker"]
	r2.mu.Unlock()
	if aw == nil || aw.PID != w.PID || !w.alive() {
		t.Fatalf("adopted worker %+v, want pid %d still running", aw, w.PID)
	}
	if running, _, _ := r2.Running(ctx, "feat"); !running {
		t.Fatal("not running after adoption")
	}
	killGroup(aw.PID, syscall.SIGKILL)
	eventually(t, func() string {
		if running, _, _ := r2.Running(ctx, "feat"); running {
			return "the adopted runtime does not miss the dead worker"
		}
		return ""
	})
	if err := r2.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if running, _, _ := r2.Running(ctx, "feat"); !running {
		t.Fatal("the worker was not started again")
	}
	f.r = r2
	w = f.worker()
	next := f.releaseWithDB(f.shas[1])
	next.Spec = &env.AppSpec{Run: `exec "$LOCAL_TEST_BIN"`}
	if err := f.r.Prepare(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Deploy(ctx, next); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if w.alive() {
			return "the first commit's worker still runs"
		}
		return ""
	})
	if running, sha, err := f.r.Running(ctx, "feat"); !running || sha != f.shas[1] || err != nil {
		t.Fatalf("Running = %v %s %v", running, sha, err)
	}
}
