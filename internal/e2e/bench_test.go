package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
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
