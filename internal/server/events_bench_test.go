package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/events"
)

// BenchmarkEventsFanout: 200 subscribers on GET /api/v1/events over real
// loopback HTTP. Each iteration tells the hub one change and waits until
// every subscriber has read and parsed it; the latency is from Notify to
// each subscriber's parse (p50-ms, p99-ms over every delivery). The
// memory figures are the growth from before the subscribers connect to
// when all 200 are connected and have had one change, for this process
// as a whole (the clients live in it too): heap in use
// (runtime.ReadMemStats HeapInuse, after a GC) and resident memory
// (/proc/self/statm).
func BenchmarkEventsFanout(b *testing.B) {
	const subscribers = 200
	hub := events.New(events.Options{})
	srv := httptest.NewServer(New(Options{Events: hub}))
	defer srv.Close()
	defer hub.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: subscribers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	heap0, rss0 := memory()

	var (
		mu        sync.Mutex
		latencies []time.Duration
		got       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ready, done sync.WaitGroup
	for range subscribers {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events", nil)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				ready.Done()
				return
			}
			defer resp.Body.Close()
			r := &sseReader{br: bufio.NewReader(resp.Body)}
			if _, err := r.next(); err != nil { // retry and id
				b.Error(err)
				ready.Done()
				return
			}
			ready.Done()
			for {
				ev, err := r.next()
				if err != nil {
					return // the benchmark ends
				}
				if ev.Event != "environment" {
					continue
				}
				var c env.Change
				if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
					b.Error(err)
					return
				}
				sent, _ := strconv.ParseInt(c.Message, 10, 64)
				d := time.Since(time.Unix(0, sent))
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
				got.Done()
			}
		}()
	}
	ready.Wait()
	for hub.Subscribers() != subscribers {
		time.Sleep(time.Millisecond)
	}
	notify := func(i int) {
		got.Add(subscribers)
		hub.Notify(ctx, env.Notice{Env: env.Environment{
			Key: fmt.Sprintf("pr-%d", i%100), Kind: env.KindPullRequest, Number: i % 100, Branch: "feature/x",
			SHA: "0123456789abcdef0123456789abcdef01234567", Status: env.StatusBuilding,
			Message: strconv.FormatInt(time.Now().UnixNano(), 10), UpdatedAt: time.Now(),
		}})
		got.Wait()
	}
	notify(-1)
	heap1, rss1 := memory()
	mu.Lock()
	latencies = latencies[:0]
	mu.Unlock()
	b.ResetTimer()
	for i := range b.N {
		notify(i)
	}
	b.StopTimer()
	if hub.Subscribers() != subscribers {
		b.Errorf("%d subscribers left of %d: some were dropped", hub.Subscribers(), subscribers)
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))]) / 1e6
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(heap1-heap0)/1e6, "heap-MB")
	b.ReportMetric(float64(rss1-rss0)/1e6, "rss-MB")
	cancel()
	done.Wait()
}

// memory returns the heap in use after a GC and the resident set size,
// in bytes (0 where /proc is not there).
func memory() (heap, rss int64) {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return int64(m.HeapInuse), rss
}
