package kube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// benchRepo is a git repository holding testdata/app at deploy/preview,
// and its commit.
func benchRepo(b *testing.B) (*gitRepo, string) {
	g := newGitRepo(b)
	files := map[string]string{}
	entries, err := os.ReadDir("testdata/app")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("testdata/app", e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		files["deploy/preview/"+e.Name()] = string(raw)
	}
	return g, g.commit("main", files)
}

// BenchmarkApplyEnvironment measures, for a new environment, the time
// from the event (Prepare: render, settle the URL) to every object applied
// and recorded in the inventory (namespace, Secret, ConfigMap, Deployment,
// Service, Ingress), without the rollout wait. The manifests are read
// from the environment's commit in a git repository (parsed once per SHA:
// the first environment fetches and parses, the others reuse). It reports
// p50 and p99 (goal: p50 <= 50ms) and the first environment's time
// (fetch included).
func BenchmarkApplyEnvironment(b *testing.B) {
	f := newFixture(b)
	g, commit := benchRepo(b)
	r := f.repoRuntime(Options{})
	ctx := context.Background()
	var took []time.Duration
	var nss []string
	for i := 0; b.Loop(); i++ {
		key := uniqueKey(fmt.Sprintf("bench%d", i))
		nss = append(nss, "preview-"+key)
		rel := repoRelease(g.source(key, "main", commit))
		start := time.Now()
		if err := r.Prepare(ctx, rel); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Apply(ctx, rel); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	if len(took) > 0 {
		b.ReportMetric(float64(took[0].Microseconds())/1000, "first-ms")
	}
	report(b, took)
	deleteAll(f, nss)
}

// BenchmarkApply100Parallel creates 100 environments at once, their
// manifests read from one commit, and reports the time until all are
// applied (goal: <= 10s).
func BenchmarkApply100Parallel(b *testing.B) {
	f := newFixture(b)
	g, commit := benchRepo(b)
	r := f.repoRuntime(Options{})
	ctx := context.Background()
	var nss []string
	for b.Loop() {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		start := time.Now()
		for i := 0; i < 100; i++ {
			key := uniqueKey(fmt.Sprintf("par%d", i))
			nss = append(nss, "preview-"+key)
			wg.Add(1)
			go func() {
				defer wg.Done()
				rel := repoRelease(g.source(key, "main", commit))
				if err := r.Prepare(ctx, rel); err != nil {
					errs <- err
					return
				}
				if _, err := r.Apply(ctx, rel); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/100envs")
	}
	b.StopTimer()
	deleteAll(f, nss)
}

func report(b *testing.B, took []time.Duration) {
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	if len(took) == 0 {
		return
	}
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}

func deleteAll(f *fixture, nss []string) {
	for _, ns := range nss {
		f.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	}
}
