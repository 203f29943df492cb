package e2e

import (
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"
)

// BenchmarkEventToDashboard measures, on a real previewd with an open
// dashboard in headless Chromium, from a change being saved and emitted
// (its "time" on the event stream) to the row's badge in the page's DOM
// showing it: a redeploy of the failed branch, whose row turns
// "building". The page records both ends on the machine's one clock: the
// change's time as the event carries it (from the server's clock, to the
// millisecond) and, from a MutationObserver, when the badge changed
// (performance.timeOrigin + performance.now()). The test only polls for
// the record afterwards, so its polling is not measured; and it waits
// for the row to be failed again, and quiet, between rounds.
//
//	go test -run '^$' -bench EventToDashboard -benchtime 50x ./internal/e2e/
func BenchmarkEventToDashboard(b *testing.B) {
	s := newDashboardSetup(b)
	ctx := tab(b, browser(b), s.in.base, opsToken)
	waitJS(b, ctx, "the live stream", `document.getElementById("live-state").textContent === "live"`)
	row := fmt.Sprintf(`document.querySelector('#environments tr[data-key=%q]')`, s.failed)
	evalJS[bool](b, ctx, fmt.Sprintf(`window.emitted = 0; window.shown = 0;
		window.previewdEvents.addEventListener("environment", e => {
			const c = JSON.parse(e.data);
			if (c.key === %q && c.status === "building" && !window.emitted) window.emitted = Date.parse(c.time);
		});
		new MutationObserver(() => {
			const r = %s;
			if (r && r.querySelector(".badge").textContent === "building" && !window.shown) window.shown = performance.timeOrigin + performance.now();
		}).observe(document.getElementById("environments"), {subtree: true, childList: true, characterData: true});
		true`, s.failed, row))
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		evalJS[bool](b, ctx, `window.emitted = 0; window.shown = 0; true`)
		resp, err := s.ops.client.Post(s.in.base+"/api/v1/environments/"+s.failed+"/redeploy", "", nil)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("redeploy: %s", resp.Status)
		}
		waitJS(b, ctx, "the row building", `window.emitted > 0 && window.shown > 0`)
		ms := evalJS[float64](b, ctx, `window.shown - window.emitted`)
		took = append(took, time.Duration(ms*float64(time.Millisecond)))
		b.StopTimer()
		waitJS(b, ctx, "the row failed again, and quiet", row+`.querySelector(".badge").textContent === "failed" && !document.querySelector('[aria-busy="true"]')`)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.9), "p90-ms")
	b.ReportMetric(q(1), "max-ms")
}
