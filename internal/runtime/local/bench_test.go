package local

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// BenchmarkUsage meters ten environments, each a process group of two
// processes, in one scan of /proc (the machine's other processes are
// read too: that is the cost).
//
//	go test -run '^$' -bench Usage ./internal/runtime/local/
func BenchmarkUsage(b *testing.B) {
	if goruntime.GOOS != "linux" {
		b.Skip("no /proc")
	}
	r, _ := newRuntime(b, Options{})
	for i := 0; i < 10; i++ {
		cmd := exec.Command("/bin/sh", "-c", "sleep 300 & exec sleep 300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			killGroup(cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait() // killed: its status says so
		})
		key := fmt.Sprintf("pr-%d", i)
		r.procs[key] = newProc(key, cmd.Process.Pid, 0, "", "", startTime(cmd.Process.Pid))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		got, err := r.Usage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 10 {
			b.Fatalf("metered %d environments, want 10", len(got))
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/scan")
}

// BenchmarkWake measures waking the prebuilt example app
// (examples/markdown-editor, SQLite): after Sleep, a request is held as
// the server holds one for a sleeping preview (it asks Proxy every 5 ms)
// while Prepare (already built: no fetch, no build) and Deploy run; the
// figure is the time from the start of Prepare to that request's answer
// by the app, which is what the runtime adds to the wait. The database's
// Ensure and the reconciler's own work are not in it.
//
//	go test -run '^$' -bench Wake -benchtime 30x ./internal/runtime/local/
func BenchmarkWake(b *testing.B) {
	_, file, _, _ := goruntime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	app := filepath.Join(b.TempDir(), "app")
	build := exec.Command("go", "build", "-o", app, "./examples/markdown-editor")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the example app: %v\n%s", err, out)
	}
	repo, sha := gitRepo(b)
	r, _ := newRuntime(b, Options{Run: "exec '" + app + "' serve", Migrate: "'" + app + "' migrate", HealthPath: "/healthz", StartTimeout: 20 * time.Second})
	db := filepath.Join(b.TempDir(), "bench.sqlite")
	rel := func() *env.Release {
		return &env.Release{Source: env.Source{Key: "bench", Kind: env.KindBranch, Branch: "main", SHA: sha, Repo: repo, Ref: "refs/heads/main"},
			Vars: map[string]string{"DATABASE_URL": "sqlite:" + db, "DATABASE_PATH": db}}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		for {
			if h, ok := r.Proxy("bench"); ok {
				h.ServeHTTP(w, req)
				return
			}
			select {
			case <-req.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	b.Cleanup(func() { r.Stop(context.Background(), "bench") })
	for _, step := range []func(context.Context, *env.Release) error{r.Prepare, r.Migrate, r.Deploy} {
		if err := step(ctx, rel()); err != nil {
			b.Fatal(err)
		}
	}
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := r.Sleep(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		type answer struct {
			took time.Duration
			err  error
		}
		answered := make(chan answer, 1)
		go func() {
			resp, err := srv.Client().Get(srv.URL + "/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("the woken app answered %s", resp.Status)
				}
			}
			answered <- answer{time.Since(t0), err}
		}()
		if err := r.Prepare(ctx, rel()); err != nil {
			b.Fatal(err)
		}
		if err := r.Deploy(ctx, rel()); err != nil {
			b.Fatal(err)
		}
		a := <-answered
		if a.err != nil {
			b.Fatal(a.err)
		}
		took = append(took, a.took)
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "wake-p50-ms")
	b.ReportMetric(q(0.99), "wake-p99-ms")
}
