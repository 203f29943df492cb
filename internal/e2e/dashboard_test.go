package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/testsvc"
)

// The tokens of the browser tests' previewd.
const (
	opsToken    = "ops-token-0123456789abcdef0123"
	viewerToken = "viewer-token-0123456789abcdef01"
)

// dashboardSetup is previewd with production ready and the branch
// feature/checkout failed: its build prints "boom: checkout.go:3" and
// fails until the file fixed exists. Tokens: ops (operator), look
// (viewer).
type dashboardSetup struct {
	in      *instance
	r       *repo
	ops     *api
	mainSHA string
	failed  string // the failed branch's key
	fixed   string
}

func newDashboardSetup(t testing.TB) *dashboardSetup {
	t.Helper()
	app, _ := binaries(t)
	s := &dashboardSetup{r: newRepo(t), fixed: filepath.Join(t.TempDir(), "fixed")}
	s.mainSHA = s.r.commit("main", nil)
	s.r.commit("feature/checkout", map[string]string{"BREAK": "1"})
	yaml := configYAML(t.TempDir(), s.r.bare, app, fmt.Sprintf(`auth:
  tokens:
  - {name: ops, token: %q, role: operator}
  - {name: look, token: %q, role: viewer}
`, opsToken, viewerToken))
	build := fmt.Sprintf(`    build: 'if [ -f BREAK ] && [ ! -f %s ]; then echo "boom: checkout.go:3"; exit 1; fi; echo built'`, s.fixed)
	yaml = strings.Replace(yaml, "    run:", build+"\n    run:", 1)
	s.in = start(t, yaml)
	s.ops = s.in.api()
	s.ops.client = &http.Client{Timeout: 10 * time.Second, Transport: bearer(opsToken)}
	s.ops.waitStatus("production", env.StatusReady, s.mainSHA)
	s.failed = env.BranchKey("feature/checkout")
	s.ops.waitStatus(s.failed, env.StatusFailed, "")
	return s
}

// sync asks previewd to list the repository now, as an operator.
func (s *dashboardSetup) sync(t testing.TB) {
	t.Helper()
	resp, err := s.ops.client.Post(s.in.base+"/api/v1/sync", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("sync answered %s", resp.Status)
	}
}

// bearer is a transport that sends a token.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

// browser is headless Chromium, one per test; each tab from it is its
// own browser context (its own cookies).
func browser(t testing.TB) context.Context {
	t.Helper()
	bin := testsvc.Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	// The first context starts the browser; tabs are made from it.
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatal(err)
	}
	return bctx
}

// tab opens a tab in a new browser context signed in with token at base.
func tab(t testing.TB, bctx context.Context, base, token string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel)
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/signin"),
		chromedp.WaitVisible(`#signin-form`),
		chromedp.SendKeys(`#signin-form input[name="token"]`, token),
		chromedp.Click(`#signin-form button[type="submit"]`),
		chromedp.WaitVisible(`#environments`),
	)
	if err != nil {
		t.Fatalf("signing in: %v", err)
	}
	return ctx
}

// screenshot saves the tab's page as name.png under PREVIEWD_ARTIFACTS
// (else the test's temporary directory) and logs the path.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("PREVIEWD_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// waitJS waits (polling in the page) until expr is truthy.
func waitJS(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main") ? document.querySelector("main").innerText : document.body.innerText`))
		t.Fatalf("waiting for %s (%s): %v\nthe page says:\n%s", what, expr, err, body)
	}
}

func evalJS[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// TestDashboardLiveInBrowser drives the dashboard in headless Chromium
// against a real previewd (git forge, local runtime, SQLite):
//   - a viewer sees no buttons, on the dashboard or an environment's page;
//   - a failed build's page shows its log tail;
//   - a push appears on an open dashboard without a reload (a mark set on
//     the window survives);
//   - an open environment page's log shows a new build's lines as they
//     are written;
//   - an operator's Redeploy button redeploys (the API says ready).
func TestDashboardLiveInBrowser(t *testing.T) {
	s := newDashboardSetup(t)
	bctx := browser(t)
	base := s.in.base

	t.Run("viewer sees no buttons", func(t *testing.T) {
		ctx := tab(t, bctx, base, viewerToken)
		waitJS(t, ctx, "the rows", `document.querySelectorAll("#environments tr[data-key]").length === 2`)
		// The filter's own submit button is the only button in main.
		noButtons := `document.querySelectorAll("main button:not(#filter button), main form[method=post]").length`
		if n := evalJS[int](t, ctx, noButtons); n != 0 {
			t.Errorf("a viewer's dashboard shows %d buttons or forms", n)
		}
		screenshot(t, ctx, "viewer-dashboard")
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/environments/"+s.failed), chromedp.WaitVisible(`#timeline`)); err != nil {
			t.Fatal(err)
		}
		if n := evalJS[int](t, ctx, noButtons); n != 0 {
			t.Errorf("a viewer's environment page shows %d buttons or forms", n)
		}
		screenshot(t, ctx, "viewer-environment")
	})

	t.Run("failed build shows its log tail", func(t *testing.T) {
		ctx := tab(t, bctx, base, opsToken)
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/environments/"+s.failed)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the log tail", `document.getElementById("log").textContent.includes("boom: checkout.go:3")`)
		if got := evalJS[string](t, ctx, `document.querySelector("#status .badge").textContent`); got != "failed" {
			t.Errorf("status badge says %q", got)
		}
		if got := evalJS[string](t, ctx, `document.getElementById("message").textContent`); !strings.Contains(got, "boom: checkout.go:3") {
			t.Errorf("the message lacks the tail: %q", got)
		}
		screenshot(t, ctx, "failed-environment")
	})

	t.Run("push appears without a reload", func(t *testing.T) {
		ctx := tab(t, bctx, base, opsToken)
		waitJS(t, ctx, "the live stream", `document.getElementById("live-state").textContent === "live"`)
		evalJS[bool](t, ctx, `window.previewdMark = "before the push"; true`)
		sha := s.r.commit("feature-live", map[string]string{"banner.txt": "live"})
		s.sync(t)
		waitJS(t, ctx, "the new row", `!!document.querySelector('#environments tr[data-key="feature-live"]')`)
		waitJS(t, ctx, "it ready", `(document.querySelector('#environments tr[data-key="feature-live"] .badge') || {}).textContent === "ready"`)
		if got := evalJS[string](t, ctx, `document.querySelector('#environments tr[data-key="feature-live"] .sha').textContent`); got != env.ShortSHA(sha) {
			t.Errorf("the new row's commit says %q, want %q", got, env.ShortSHA(sha))
		}
		if mark := evalJS[string](t, ctx, `String(window.previewdMark)`); mark != "before the push" {
			t.Errorf("the page was reloaded: the window's mark is %q", mark)
		}
		// A new commit on a row that is there already.
		sha2 := s.r.commit("feature-live", map[string]string{"banner.txt": "live 2"})
		s.sync(t)
		waitJS(t, ctx, "the new commit", fmt.Sprintf(`document.querySelector('#environments tr[data-key="feature-live"] .sha').textContent === %q`, env.ShortSHA(sha2)))
		if order := evalJS[string](t, ctx, `Array.from(document.querySelectorAll("#environments tr[data-key]")).map(r => r.dataset.key).join(" ")`); !strings.HasPrefix(order, s.failed+" production") {
			t.Errorf("rows in the order %q, want the failed one first, then production", order)
		}
		if mark := evalJS[string](t, ctx, `String(window.previewdMark)`); mark != "before the push" {
			t.Errorf("the page was reloaded: the window's mark is %q", mark)
		}
		// The filter works on the rendered rows.
		if err := chromedp.Do(ctx, chromedp.SendKeys(`#q`, "failed")); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the filter", `Array.from(document.querySelectorAll("#environments tr[data-key]")).filter(r => !r.hidden).map(r => r.dataset.key).join(" ") === `+fmt.Sprintf("%q", s.failed))
		screenshot(t, ctx, "live-dashboard")
	})

	t.Run("log follows a build", func(t *testing.T) {
		ctx := tab(t, bctx, base, opsToken)
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/environments/"+s.failed)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the live stream", `document.getElementById("live-state").textContent === "live"`)
		count := `(document.getElementById("log").textContent.match(/boom: checkout.go:3/g) || []).length`
		waitJS(t, ctx, "the log stream", count+` > 0`)
		n := evalJS[int](t, ctx, count)
		evalJS[bool](t, ctx, `window.previewdMark = "before the build"; true`)
		resp, err := s.ops.client.Post(base+"/api/v1/environments/"+s.failed+"/redeploy", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		waitJS(t, ctx, "the new build's lines", fmt.Sprintf(`%s > %d`, count, n))
		waitJS(t, ctx, "failed again", `document.querySelector("#status .badge").textContent === "failed"`)
		if mark := evalJS[string](t, ctx, `String(window.previewdMark)`); mark != "before the build" {
			t.Errorf("the page was reloaded: the window's mark is %q", mark)
		}
		screenshot(t, ctx, "live-log")
	})

	t.Run("operator redeploys", func(t *testing.T) {
		ctx := tab(t, bctx, base, opsToken)
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/environments/"+s.failed), chromedp.WaitVisible(`#redeploy`)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.fixed, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		evalJS[bool](t, ctx, `window.previewdMark = "before the redeploy"; true`)
		if err := chromedp.Do(ctx, chromedp.Click(`#redeploy`)); err != nil {
			t.Fatal(err)
		}
		e := s.ops.waitStatus(s.failed, env.StatusReady, "")
		if !strings.Contains(e.Message, "ready") {
			t.Logf("ready: %s", e.Message)
		}
		var found bool
		for _, ev := range e.Events {
			found = found || (ev.Reason == "Action" && strings.Contains(ev.Message, "redeploy by token:ops (dashboard)"))
		}
		if !found {
			t.Errorf("the history lacks the redeploy by token:ops: %+v", e.Events)
		}
		// The button posts and comes back to the page.
		waitJS(t, ctx, "the redeploy in the timeline", `document.getElementById("timeline").textContent.includes("token:ops")`)
		screenshot(t, ctx, "redeployed-environment")
	})
}

// TestDashboardScreenshot renders the dashboard of a realistic previewd
// in Chromium at 1280×800 (production ready; branches ready, sleeping,
// building and failed) and checks what it shows: the failed one first,
// then production, each with its status in words and the building one's
// step time. With PREVIEWD_UPDATE_DOCS=1 it writes docs/dashboard.png,
// the README's screenshot.
func TestDashboardScreenshot(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	release := filepath.Join(t.TempDir(), "release")
	mainSHA := r.commit("main", nil)
	r.commit("feature/checkout", map[string]string{"BREAK": "1"})
	r.commit("feature/search", map[string]string{"SLOW": "1"})
	r.commit("fix-typo", map[string]string{"README": "typo"})
	r.commit("docs-update", map[string]string{"docs.md": "docs"})
	yaml := lifecycleYAML(t.TempDir(), r.bare, app, "", "  ttl: 3d\n  cost: {cpuHour: 0.04, gbHour: 0.005, currency: USD}\n")
	build := fmt.Sprintf(`    build: 'if [ -f BREAK ]; then echo "checkout.go:3: undefined: cart"; exit 1; fi; if [ -f SLOW ]; then until [ -f %s ]; do sleep 0.1; done; fi'`, release)
	yaml = strings.Replace(yaml, "    run:", build+"\n    run:", 1)
	in := start(t, yaml)
	t.Cleanup(func() { os.WriteFile(release, nil, 0o644) }) // lets the slow build end before previewd stops
	a := in.api()
	a.waitStatus("production", env.StatusReady, mainSHA)
	a.waitStatus("docs-update", env.StatusReady, "")
	a.waitStatus("fix-typo", env.StatusReady, "")
	failed := env.BranchKey("feature/checkout")
	a.waitStatus(failed, env.StatusFailed, "")
	building := env.BranchKey("feature/search")
	a.waitStatus(building, env.StatusBuilding, "")
	if code, body := a.post("/api/v1/environments/fix-typo/sleep", ""); code != http.StatusAccepted {
		t.Fatalf("sleep: %d %s", code, body)
	}
	a.waitStatus("fix-typo", env.StatusSleeping, "")

	ctx, cancel := chromedp.NewContext(browser(t))
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(in.base+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the rows", `document.querySelectorAll("#environments tr[data-key]").length === 5`)
	waitJS(t, ctx, "the step's time ticking", fmt.Sprintf(`/^[1-9]\d* s$/.test((document.querySelector('tr[data-key=%q] .elapsed') || {}).textContent)`, building))
	rows := evalJS[string](t, ctx, `Array.from(document.querySelectorAll("#environments tr[data-key]")).map(r => r.dataset.key + ":" + r.querySelector(".badge").textContent).join(" ")`)
	want := failed + ":failed production:ready docs-update:ready " + building + ":building fix-typo:sleeping"
	if rows != want {
		t.Errorf("rows %q, want %q", rows, want)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("PREVIEWD_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	p := filepath.Join(dir, "dashboard.png")
	if os.Getenv("PREVIEWD_UPDATE_DOCS") == "1" {
		p = filepath.Join(moduleRoot(), "docs", "dashboard.png")
	}
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}
