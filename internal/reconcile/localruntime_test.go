package reconcile

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/gittest"
	"github.com/previewd/previewd/internal/runtime/local"
)

// TestMain doubles as the web app of the tests on the real local runtime:
// the test binary started with RECONCILE_TEST_APP=1 answers /healthz on
// $HOST:$PORT.
func TestMain(m *testing.M) {
	if os.Getenv("RECONCILE_TEST_APP") == "1" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
		err := http.ListenAndServe(net.JoinHostPort(os.Getenv("HOST"), os.Getenv("PORT")), mux)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// localRepo makes a repository with one commit on main and returns its
// path and the commit.
func localRepo(t *testing.T) (string, string) {
	t.Helper()
	r := gittest.New(t)
	return r.Dir, r.Commit(map[string]string{"worker.sh": "echo \"worker: cannot reach the queue at $QUEUE_URL\"\nexit 3\n"})
}

// TestActWorkerCrashLoopFailsItsEnvironment: on the real local runtime, a
// worker (a process that is not the routed one) that exits at once every
// time counts as the environment's crash: it is restarted after the
// backoff, the web process serving on, and after MaxRestarts the
// environment is failed with the worker's tagged output in its message.
func TestActWorkerCrashLoopFailsItsEnvironment(t *testing.T) {
	repo, sha := localRepo(t)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var f *fixture
	var rt *local.Runtime
	f = newFixture(t, func(o *Options) { // MaxRestarts 2
		rt, err = local.New(local.Options{
			Dir: t.TempDir(),
			Processes: []local.Process{
				{Name: "web", Run: `exec "$RECONCILE_TEST_BIN"`, HTTP: true},
				{Name: "worker", Run: "sh worker.sh"},
			},
			HealthPath:   "/healthz",
			StartTimeout: 30 * time.Second,
			Env:          map[string]string{"RECONCILE_TEST_APP": "1", "RECONCILE_TEST_BIN": bin, "QUEUE_URL": "amqp://127.0.0.1:1"},
			OnExit:       func(key string) { f.rec.Exited(key) },
		}, o.Store)
		if err != nil {
			t.Fatal(err)
		}
		o.Runtime = rt
	})
	t.Cleanup(func() {
		if err := rt.Stop(context.Background(), "feat"); err != nil {
			t.Error(err)
		}
	})
	src := env.Source{Key: "feat", Kind: env.KindBranch, Branch: "feat", SHA: sha, Repo: repo, Ref: "refs/heads/main", Trusted: true}
	f.want(src)
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady {
		t.Fatalf("after the deploy: %s %q", r.Status, r.Message)
	}
	for i := 0; ; i++ {
		// The worker exits at once: the environment no longer runs.
		deadline := time.Now().Add(20 * time.Second)
		for {
			running, _, err := rt.Running(f.ctx, "feat")
			if err != nil {
				t.Fatal(err)
			}
			if !running {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("crash %d: the worker still runs after 20s", i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.clock.add(time.Minute) // past the backoff
		f.mustReconcile("feat")
		r := f.record("feat")
		if r.Status == env.StatusFailed {
			if i != 2 || r.Restarts != 2 {
				t.Errorf("failed after %d crashes and %d restarts, want 3 and 2", i+1, r.Restarts)
			}
			if !strings.Contains(r.Message, "gave up after 2 restarts") || !strings.Contains(r.Message, "[worker] worker: cannot reach the queue at amqp://127.0.0.1:1") {
				t.Errorf("message %q, want the give-up with the worker's tagged output", r.Message)
			}
			break
		}
		if r.Status != env.StatusReady || r.Restarts != i+1 || !strings.Contains(r.Message, "restarted") {
			t.Fatalf("crash %d: %s %q restarts %d", i+1, r.Status, r.Message, r.Restarts)
		}
		if i > 5 {
			t.Fatal("never gave up")
		}
	}
	// Only the worker crashed: the web process still serves.
	if h, ok := rt.Proxy("feat"); !ok || h == nil {
		t.Error("the web process is gone")
	}
}
