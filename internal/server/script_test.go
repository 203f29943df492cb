package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
	"github.com/previewd/previewd/internal/testsvc"
)

// stream serves Server-Sent Events in the framing of env.Change's doc
// comment (GET /api/v1/events) or env.LogLine's (the log's follow), from
// what the test sends: the dashboard script is tested against the wire
// format, apart from the hub that will produce it.
type stream struct {
	frames chan string
	open   chan struct{}
}

func newStream() *stream {
	return &stream{frames: make(chan string, 16), open: make(chan struct{}, 16)}
}

func (s *stream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	s.open <- struct{}{}
	for {
		select {
		case <-r.Context().Done():
			return
		case f := <-s.frames:
			fmt.Fprint(w, f)
			rc.Flush()
		}
	}
}

func changeFrame(t testing.TB, c env.Change) string {
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("id: %d\nevent: environment\ndata: %s\n\n", c.ID, b)
}

// scriptFixture is the server of dashboardStore, open (no auth), with
// the event stream and the log's follow served by streams.
type scriptFixture struct {
	st           *store.Store
	srv          *httptest.Server
	events, logs *stream
	ctx          context.Context
}

func newScriptFixture(t testing.TB) *scriptFixture {
	bin := testsvc.Chromium(t)
	st := dashboardStore(t)
	f := &scriptFixture{st: st, events: newStream(), logs: newStream()}
	s := New(Options{Store: st, Domain: "preview.test", Logs: textLogs("==> build 4444444\nboom\n"), Redeploy: func(string) {}})
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/events", f.events)
	mux.Handle("GET /api/v1/environments/{key}/logs", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "true" {
			s.ServeHTTP(w, r)
			return
		}
		f.logs.ServeHTTP(w, r)
	}))
	mux.Handle("/", s)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	f.ctx = ctx
	return f
}

// textLogs is a runtime.Logs of a fixed text.
type textLogs string

func (l textLogs) Logs(ctx context.Context, key string, n int) (string, error) { return string(l), nil }

func (f *scriptFixture) wait(t testing.TB, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(f.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(5*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		text, _ := chromedp.Run(f.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %s: %v\n%s", what, err, text)
	}
}

func (f *scriptFixture) eval(t testing.TB, expr string) string {
	t.Helper()
	v, err := chromedp.Run(f.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

const rowsJS = `Array.from(document.querySelectorAll("#environments tr[data-key]")).map(r => r.dataset.key + ":" + r.querySelector(".badge").textContent).join(" ")`

// TestScriptDashboard: the dashboard's script, in headless Chromium,
// follows the stream without reloading the page: a change is patched in
// (with the step's elapsed time), a new environment's row appears in its
// place, a removed one goes, a reset reads everything again, and the
// filter hides rows.
func TestScriptDashboard(t *testing.T) {
	f := newScriptFixture(t)
	ctx := context.Background()
	if err := chromedp.Do(f.ctx, chromedp.Navigate(f.srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	<-f.events.open
	f.wait(t, "live", `document.getElementById("live-state").textContent === "live"`)
	f.eval(t, `window.previewdMark = "kept"; ""`)
	if got := f.eval(t, rowsJS); got != "pr-4:failed production:ready docs:building pr-3:ready" {
		t.Fatalf("rows: %s", got)
	}

	// A change: patched at once, then the row is read again; a button
	// focused in it keeps the focus (keyboard users are not thrown out).
	if err := chromedp.Do(f.ctx, chromedp.Focus(`tr[data-key="pr-3"] button[name="keep"]`)); err != nil {
		t.Fatal(err)
	}
	building, sha := env.StatusBuilding, "6666666666666666666666666666666666666666"
	f.st.Set(ctx, "pr-3", store.Update{Status: &building, SHA: &sha})
	started := time.Now().Add(-12 * time.Second)
	f.events.frames <- changeFrame(t, env.Change{ID: 1, Key: "pr-3", Branch: "fix", SHA: sha, Status: building, Message: "building 6666666", Time: time.Now(), StepStartedAt: started})
	f.wait(t, "pr-3 building", `document.querySelector('tr[data-key="pr-3"] .badge').textContent === "building"`)
	f.wait(t, "its elapsed time", `/^1[2-9] s$/.test(document.querySelector('tr[data-key="pr-3"] .elapsed').textContent)`)
	if got := f.eval(t, `document.querySelector('tr[data-key="pr-3"] .sha').textContent`); got != "6666666" {
		t.Errorf("commit %q", got)
	}
	f.wait(t, "the row read again", `!document.querySelector('[aria-busy="true"]')`)
	if got := f.eval(t, `document.activeElement.name + " in " + (document.activeElement.closest("tr") || {dataset: {}}).dataset.key`); got != "keep in pr-3" {
		t.Errorf("after the row was read again the focus is on %q", got)
	}

	// A new environment appears in its place; a failed one moves first.
	if err := f.st.Upsert(ctx, env.Source{Key: "pr-9", Kind: env.KindPullRequest, Number: 9, Branch: "new"}); err != nil {
		t.Fatal(err)
	}
	failed := env.StatusFailed
	f.st.Set(ctx, "pr-9", store.Update{Status: &failed})
	f.events.frames <- changeFrame(t, env.Change{ID: 2, Key: "pr-9", Branch: "new", Status: failed, Time: time.Now()})
	f.wait(t, "pr-9's row among the failed", rowsJS+` === "pr-4:failed pr-9:failed production:ready docs:building pr-3:building"`)
	f.wait(t, "the count", `document.getElementById("count").textContent === "5 environments"`)

	// A removed one goes.
	f.st.Set(ctx, "docs", store.Update{Deleted: true})
	f.events.frames <- changeFrame(t, env.Change{ID: 3, Key: "docs", Status: env.StatusDeleting, Removed: true, Time: time.Now()})
	f.wait(t, "docs gone", `!document.querySelector('tr[data-key="docs"]')`)

	// A reset reads the list again.
	ready := env.StatusReady
	f.st.Set(ctx, "pr-4", store.Update{Status: &ready})
	f.events.frames <- "event: reset\ndata: {}\n\n"
	f.wait(t, "the list read again", rowsJS+` === "pr-9:failed production:ready pr-3:building pr-4:ready"`)

	// The filter, client-side.
	if err := chromedp.Do(f.ctx, chromedp.SendKeys(`#q`, "ready")); err != nil {
		t.Fatal(err)
	}
	f.wait(t, "filtered", `Array.from(document.querySelectorAll("#environments tr[data-key]")).filter(r => !r.hidden).map(r => r.dataset.key).join(" ") === "production pr-4"`)
	f.wait(t, "the count shown", `document.getElementById("shown").textContent === "2 of 4 shown"`)
	if got := f.eval(t, `location.search`); got != "?q=ready" {
		t.Errorf("the address says %q", got)
	}
	if got := f.eval(t, `String(window.previewdMark)`); got != "kept" {
		t.Errorf("the page was reloaded (mark %q)", got)
	}
}

// TestScriptEnvironmentLog: on an environment's page the script replaces
// the server's tail with the followed log's lines, appends new ones, and
// patches the status from the event stream.
func TestScriptEnvironmentLog(t *testing.T) {
	f := newScriptFixture(t)
	if err := chromedp.Do(f.ctx, chromedp.Navigate(f.srv.URL+"/environments/pr-4")); err != nil {
		t.Fatal(err)
	}
	if got := f.eval(t, `document.getElementById("log").textContent`); got != "==> build 4444444\nboom\n" {
		t.Errorf("server-rendered log %q", got)
	}
	<-f.logs.open
	line := func(text string) string {
		b, _ := json.Marshal(env.LogLine{Step: "build", Text: text})
		return "event: log\ndata: " + string(b) + "\n\n"
	}
	f.logs.frames <- line("==> build 4444444 (from the stream)")
	f.logs.frames <- line("boom <b>not html</b>")
	f.wait(t, "the followed lines", `document.getElementById("log").textContent === "==> build 4444444 (from the stream)\nboom <b>not html</b>\n"`)
	<-f.events.open
	f.eval(t, `window.previewdMark = "kept"; ""`)
	f.events.frames <- changeFrame(t, env.Change{ID: 1, Key: "pr-3", Status: env.StatusReady, Time: time.Now()})
	f.events.frames <- changeFrame(t, env.Change{ID: 2, Key: "pr-4", Status: env.StatusMigrating, Message: "migrating", Time: time.Now()})
	f.wait(t, "the status", `document.querySelector("#status .badge").textContent === "migrating" && !!document.querySelector("#status .elapsed")`)
	f.logs.frames <- line("more")
	f.wait(t, "one more line", `document.getElementById("log").textContent.endsWith("not html</b>\nmore\n")`)
	if got := f.eval(t, `String(window.previewdMark)`); got != "kept" {
		t.Errorf("the page was reloaded (mark %q)", got)
	}
}

// BenchmarkEventToDOM measures from the server writing a change to the
// stream to the dashboard's DOM showing it: a MutationObserver in the
// page records the time (performance.timeOrigin + performance.now(), the
// same clock as the test's, on one machine) when the row's badge says
// the new status; the test notes the time just before it writes the
// frame, and polls for the page's record afterwards, so the polling is
// not measured.
//
//	go test -run '^$' -bench EventToDOM -benchtime 100x ./internal/server/
func BenchmarkEventToDOM(b *testing.B) {
	f := newScriptFixture(b)
	if err := chromedp.Do(f.ctx, chromedp.Navigate(f.srv.URL+"/")); err != nil {
		b.Fatal(err)
	}
	<-f.events.open
	f.wait(b, "live", `document.getElementById("live-state").textContent === "live"`)
	f.eval(b, `window.seen = {}; new MutationObserver(() => {
		const r = document.querySelector('tr[data-key="pr-3"]');
		const s = r && r.querySelector(".badge").textContent;
		if (s && !(s in window.seen)) window.seen[s] = performance.timeOrigin + performance.now();
	}).observe(document.getElementById("environments"), {subtree: true, childList: true, characterData: true}); ""`)
	statuses := []env.Status{env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusReady}
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st := statuses[i%len(statuses)]
		f.eval(b, `delete window.seen[`+fmt.Sprintf("%q", st)+`]; ""`)
		f.st.Set(context.Background(), "pr-3", store.Update{Status: &st})
		t0 := time.Now()
		f.events.frames <- changeFrame(b, env.Change{ID: uint64(i + 1), Key: "pr-3", Status: st, Time: t0})
		expr := fmt.Sprintf(`window.seen[%q] || 0`, st)
		var at float64
		for at == 0 {
			v, err := chromedp.Run(f.ctx, chromedp.Evaluate[float64](expr))
			if err != nil {
				b.Fatal(err)
			}
			at = v
		}
		took = append(took, time.UnixMicro(int64(at*1000)).Sub(t0))
		b.StopTimer()
		f.wait(b, "the row read again", `!document.querySelector('[aria-busy="true"]')`)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.9), "p90-ms")
	b.ReportMetric(q(1), "max-ms")
}
