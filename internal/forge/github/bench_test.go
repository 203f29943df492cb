package github

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/ghtest"
)

// BenchmarkWebhookAck measures, over loopback HTTP, the time from sending
// a signed pull_request delivery (the 28 KB opened fixture) to its 202.
//
//	go test -run '^$' -bench WebhookAck -benchtime 2000x ./internal/forge/github/
func BenchmarkWebhookAck(b *testing.B) {
	queued := make(chan string, 1024)
	h := NewWebhook(WebhookOptions{Secret: secret, Owner: "Codertocat", Repo: "Hello-World", ProductionBranch: "main",
		Enqueue: func(k string) {
			select {
			case queued <- k:
			default:
			}
		}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	body := ghtest.Fixture("webhooks/pull_request.opened.json")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := ghtest.NewDelivery(srv.URL, secret, "pull_request", body)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("HTTP %d", resp.StatusCode)
		}
		select {
		case <-queued:
		default:
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkResync1000 lists a repository with 1,000 open pull requests
// that did not change since the last listing. It reports the requests
// sent per resync, how many counted against the rate limit, and the CPU
// time of the whole process (previewd's source and the in-process fake
// GitHub answering it).
//
//	go test -run '^$' -bench Resync1000 -benchtime 200x ./internal/forge/github/
func BenchmarkResync1000(b *testing.B) {
	fake := ghtest.New(b, "octocat", "Hello-World")
	fake.SetBranch("main", sha(1))
	for n := 1; n <= 1000; n++ {
		fake.OpenPR(ghtest.PR{Number: n, HeadRef: fmt.Sprintf("feature-%d", n), HeadSHA: sha(1000 + n)})
	}
	s := newSource(b, fake, SourceOptions{FullEvery: time.Hour})
	ctx := context.Background()
	t0 := time.Now()
	if srcs, err := s.List(ctx); err != nil || len(srcs) != 1001 {
		b.Fatalf("first listing: %d, %v", len(srcs), err)
	}
	b.Logf("first (full) listing of 1,000 pull requests: %s, %d requests", time.Since(t0).Round(time.Millisecond), fake.Stats().Requests)
	before, cpu0 := fake.Stats(), cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		srcs, err := s.List(ctx)
		if err != nil || len(srcs) != 1001 {
			b.Fatalf("listing: %d, %v", len(srcs), err)
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	after := fake.Stats()
	if used := after.RateUsed - before.RateUsed; used != 0 {
		b.Errorf("unchanged resyncs used %d of the rate limit", used)
	}
	b.ReportMetric(float64(after.Requests-before.Requests)/float64(b.N), "requests/op")
	b.ReportMetric(float64(after.Requests-before.Requests-(after.NotModified-before.NotModified))/float64(b.N), "non-304/op")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
