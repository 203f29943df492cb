package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/pgtest"
)

// BenchmarkPushToReady measures, for the prebuilt example app on the local
// runtime with SQLite, the time from a sync after a branch push to the
// environment being ready (checkout, database, migrate, start, health),
// and the time from a sync after the branch's deletion to the environment
// being gone (process stopped, files and database removed).
//
//	go test -run '^$' -bench PushToReady -benchtime 30x ./internal/e2e/
func BenchmarkPushToReady(b *testing.B) {
	app, _ := binaries(b)
	r := newRepo(b)
	r.commit("main", nil)
	in := start(b, configYAML(b.TempDir(), r.bare, app, ""))
	st := in.d.Store()
	ctx := context.Background()
	wait := func(cond func() bool) time.Duration {
		t0 := time.Now()
		for !cond() {
			if time.Since(t0) > time.Minute {
				b.Fatal("timed out")
			}
			time.Sleep(200 * time.Microsecond)
		}
		return time.Since(t0)
	}
	wait(func() bool { e, err := st.Get(ctx, "production"); return err == nil && e.Status == env.StatusReady })

	var ready, gone []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		branch := fmt.Sprintf("bench-%d", i)
		sha := r.commit(branch, map[string]string{"banner.txt": branch})
		b.StartTimer()
		t0 := time.Now()
		in.d.Resync()
		wait(func() bool {
			e, err := st.Get(ctx, branch)
			return err == nil && e.Status == env.StatusReady && e.SHA == sha
		})
		ready = append(ready, time.Since(t0))
		b.StopTimer()
		r.deleteBranch(branch)
		b.StartTimer()
		t0 = time.Now()
		in.d.Resync()
		wait(func() bool {
			e, err := st.Get(ctx, branch)
			return err == nil && e.DeletedAt != nil
		})
		gone = append(gone, time.Since(t0))
	}
	b.StopTimer()
	report(b, "ready", ready)
	report(b, "teardown", gone)
}

func report(b *testing.B, name string, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) float64 { return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), name+"-p50-ms")
	b.ReportMetric(q(0.9), name+"-p90-ms")
	b.ReportMetric(q(1), name+"-max-ms")
}

// BenchmarkDBCreateProcess measures `previewd db create` as a whole
// process (start, config, connect, role + schema + grants, print) against
// a real PostgreSQL, the shape a CI pipeline uses; and `previewd db drop`.
//
//	go test -run '^$' -bench DBCreateProcess -benchtime 30x ./internal/e2e/
func BenchmarkDBCreateProcess(b *testing.B) {
	pg := pgtest.Shared(b)
	_, previewd := binaries(b)
	db := pg.NewDatabase(b)
	cfg := filepath.Join(b.TempDir(), "previewd.yaml")
	yaml := fmt.Sprintf("dataDir: %q\nforge: {git: {url: /nonexistent}}\ndatabase:\n  kind: postgres\n  postgres: {adminURL: %q, passwordSecret: bench-secret}\n", b.TempDir(), pg.AdminURLFor(db))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	run := func(args ...string) time.Duration {
		t0 := time.Now()
		out, err := exec.Command(previewd, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("previewd %v: %v\n%s", args, err, out)
		}
		return time.Since(t0)
	}
	var create, drop []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := fmt.Sprintf("pr-%d", 1000+i)
		create = append(create, run("db", "create", "--config", cfg, "--key", key))
		drop = append(drop, run("db", "drop", "--config", cfg, "--key", key))
	}
	b.StopTimer()
	report(b, "create", create)
	report(b, "drop", drop)
}
