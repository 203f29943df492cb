package e2e

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// BenchmarkWakeOnRequest measures, for the prebuilt example app on the
// local runtime with SQLite, a request through previewd's proxy to a
// sleeping preview: from the request's arrival to the app's answer (the
// reconciler's wake, the database, the process start, its health).
//
//	go test -run '^$' -bench WakeOnRequest -benchtime 50x ./internal/e2e/
func BenchmarkWakeOnRequest(b *testing.B) {
	app, _ := binaries(b)
	r := newRepo(b)
	r.commit("main", nil)
	sha := r.commit("w", nil)
	dataDir := b.TempDir()
	in := start(b, lifecycleYAML(dataDir, r.bare, app, "", "  wakeTimeout: 30s\n"))
	a := in.api()
	a.waitStatus("w", env.StatusReady, sha)
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if code, body := a.post("/api/v1/environments/w/sleep", ""); code != http.StatusAccepted {
			b.Fatalf("sleep: %d %s", code, body)
		}
		a.waitStatus("w", env.StatusSleeping, sha)
		eventually(b, 30*time.Second, func() string {
			if p := appPIDs(dataDir, "w"); len(p) > 0 {
				return fmt.Sprintf("still runs %v", p)
			}
			return ""
		})
		time.Sleep(20 * time.Millisecond) // the sleep's reconcile has ended
		b.StartTimer()
		t0 := time.Now()
		code, body := a.preview("w", "GET", "/healthz", "")
		ds = append(ds, time.Since(t0))
		if code != http.StatusOK || !strings.Contains(body, sha) {
			b.Fatalf("the waking request: %d %s", code, body)
		}
	}
	b.StopTimer()
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) float64 { return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "wake-p50-ms")
	b.ReportMetric(q(0.99), "wake-p99-ms")
	b.ReportMetric(q(1), "wake-max-ms")
}

// BenchmarkIdle200 runs previewd serve as its own process with 200
// branch previews of the example app (and production): 10 kept awake,
// 190 asleep after sleepAfter. Once all have settled it reports previewd's
// resident memory and the CPU it used (its own and its children's that
// ended) over six idle minutes, as a share of one core: the window holds
// every environment's periodic resync (5 minutes after its last
// reconcile), the meter's samples and the forge's polls.
//
//	go test -run '^$' -bench Idle200 -benchtime 1x ./internal/e2e/
func BenchmarkIdle200(b *testing.B) {
	const n, awake, window = 200, 10, 6 * time.Minute
	app, _ := binaries(b)
	r := newRepo(b)
	r.commit("main", nil)
	branches := make([]string, n)
	for i := range branches {
		branches[i] = fmt.Sprintf("b%03d", i)
		r.git(r.work, "branch", "-q", branches[i], "main")
	}
	r.git(r.work, "push", "-q", "origin", "--all")
	p := newProcess(b, r.bare)
	port := strings.TrimPrefix(p.api.base, "http://127.0.0.1:")
	yaml := strings.Replace(lifecycleYAML(p.dataDir, r.bare, app, "", "  sleepAfter: 3s\n"), "pollInterval: 1h", "pollInterval: 30s", 1) + "listen: 127.0.0.1:" + port + "\nconcurrency: 4\n"
	if err := os.WriteFile(p.cfg, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		cmd := p.start()
		a := p.api
		a.client.Timeout = 30 * time.Second
		counts := func() map[env.Status]int {
			var body struct {
				Environments []env.Environment `json:"environments"`
			}
			a.getJSON("/api/v1/environments", &body)
			c := map[env.Status]int{}
			for _, e := range body.Environments {
				c[e.Status]++
			}
			return c
		}
		waitFor := func(what string, ok func(map[env.Status]int) bool) {
			deadline := time.Now().Add(10 * time.Minute)
			for c := counts(); !ok(c); c = counts() {
				if time.Now().After(deadline) {
					b.Fatalf("%s: %v", what, c)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
		waitFor("every preview up once", func(c map[env.Status]int) bool { return c[env.StatusReady]+c[env.StatusSleeping] == n+1 })
		for _, k := range branches[:awake] {
			for _, act := range []string{"keep", "wake"} {
				if code, body := a.post("/api/v1/environments/"+k+"/"+act, ""); code != http.StatusAccepted {
					b.Fatalf("%s %s: %d %s", act, k, code, body)
				}
			}
		}
		waitFor("190 asleep, 10 kept awake", func(c map[env.Status]int) bool {
			return c[env.StatusSleeping] == n-awake && c[env.StatusReady] == awake+1
		})
		time.Sleep(5 * time.Second) // the last sleeps' reconciles are done
		pid := cmd.Process.Pid
		cpu0, t0 := cpuTicks(b, pid), time.Now()
		time.Sleep(window)
		cpu1, took := cpuTicks(b, pid), time.Since(t0)
		b.ReportMetric(float64(rssKB(b, pid))/1024, "rss-MB")
		b.ReportMetric(float64(cpu1-cpu0)/100/took.Seconds()*100, "idle-cpu-%")
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		p.killApps(append(branches, "production")...)
	}
}

// cpuTicks is pid's utime+stime+cutime+cstime in clock ticks (100 Hz).
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var t int64
	for _, i := range []int{11, 12, 13, 14} { // fields 14-17, counted from field 3
		v, _ := strconv.ParseInt(f[i], 10, 64)
		t += v
	}
	return t
}

// rssKB is pid's resident set (VmRSS) in kB.
func rssKB(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
