package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
)

const hookSecret = "It's a Secret to Everybody"

// githubYAML configures previewd on the fake GitHub, fetching code from
// the local bare repository, with the prebuilt example app.
func githubYAML(dataDir string, fake *ghtest.Server, cloneURL, app, extra string) string {
	return fmt.Sprintf(`
dataDir: %q
domain: preview.test
forge:
  kind: github
  github:
    apiURL: %q
    owner: %s
    repo: %s
    token: test-token
    webhookSecret: %q
    cloneURL: %q
    pollInterval: 1h
    requestTimeout: 1s
    excludeLabels: [no-preview]
    dashboardURL: https://previewd.example.com
%s
runtime:
  kind: local
  local:
    run: %q
    healthPath: /healthz
    startTimeout: 20s
    maxRestarts: 3
database:
  kind: sqlite
migrate: %q
`, dataDir, fake.APIURL(), fake.Owner, fake.Repo, hookSecret, cloneURL, extra, app+" serve", app+" migrate")
}

// ghWorld is a fake GitHub, the repository behind it and previewd.
type ghWorld struct {
	t    *testing.T
	fake *ghtest.Server
	repo *repo
	in   *instance
	a    *api
}

// pushPR commits files on branch and points refs/pull/<n>/head at it, as
// GitHub does for a pull request.
func (w *ghWorld) pushPR(n int, branch string, files map[string]string) string {
	w.t.Helper()
	sha := w.repo.commit(branch, files)
	w.repo.git(w.repo.work, "push", "-q", "-f", "origin", fmt.Sprintf("HEAD:refs/pull/%d/head", n))
	return sha
}

func (w *ghWorld) deliver(event string, body []byte) {
	w.t.Helper()
	code, resp, err := ghtest.Deliver(w.in.client, w.in.base+"/webhooks/github", hookSecret, event, body)
	if err != nil {
		w.t.Fatal(err)
	}
	if code != http.StatusAccepted && code != http.StatusOK {
		w.t.Fatalf("webhook %s answered %d: %s", event, code, resp)
	}
}

func (w *ghWorld) prEvent(action string, n int) {
	w.deliver("pull_request", w.fake.PullRequestEvent(action, n))
}

// ourComments returns previewd's comments on pull request n.
func (w *ghWorld) ourComments(n int) []ghtest.Comment {
	var out []ghtest.Comment
	for _, c := range w.fake.Comments(n) {
		if strings.HasPrefix(c.Body, fmt.Sprintf("<!-- previewd:pr-%d -->", n)) {
			out = append(out, c)
		}
	}
	return out
}

// waitComment waits until pull request n has exactly one previewd comment
// containing every string in want.
func (w *ghWorld) waitComment(n int, want ...string) {
	w.t.Helper()
	eventually(w.t, 60*time.Second, func() string {
		cs := w.ourComments(n)
		if len(cs) != 1 {
			return fmt.Sprintf("pr-%d has %d previewd comments", n, len(cs))
		}
		for _, s := range want {
			if !strings.Contains(cs[0].Body, s) {
				return fmt.Sprintf("pr-%d's comment lacks %q:\n%s", n, s, cs[0].Body)
			}
		}
		return ""
	})
}

// waitDeployments waits until the deployments of environment envName are,
// by SHA, in the given states, and there is one per SHA. A state ending in
// "?" may also be no deployment at all.
func (w *ghWorld) waitDeployments(envName string, want map[string]string) {
	w.t.Helper()
	eventually(w.t, 60*time.Second, func() string {
		got := map[string]string{}
		for _, d := range w.fake.Deployments() {
			if d.Environment != envName {
				continue
			}
			if _, dup := got[d.SHA]; dup {
				return fmt.Sprintf("%s has two deployments of %s", envName, env.ShortSHA(d.SHA))
			}
			got[d.SHA] = d.State()
		}
		for sha, st := range want {
			if opt, ok := strings.CutSuffix(st, "?"); ok && got[sha] == "" {
				got[sha] = st
			} else if ok {
				got[sha] += map[bool]string{true: "?"}[got[sha] == opt]
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Sprintf("%s deployments %v, want %v", envName, short(got), short(want))
		}
		return ""
	})
}

func short(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[env.ShortSHA(k)] = v
	}
	return out
}

func newGitHubWorld(t *testing.T, extra string) (*ghWorld, string, func() *instance) {
	app, _ := binaries(t)
	w := &ghWorld{t: t, fake: ghtest.New(t, "octocat", "Hello-World"), repo: newRepo(t)}
	mainSHA := w.repo.commit("main", map[string]string{"banner.txt": "production"})
	w.fake.SetBranch("main", mainSHA)
	dataDir := t.TempDir()
	start := func() *instance {
		w.in = start(t, githubYAML(dataDir, w.fake, w.repo.bare, app, extra))
		w.a = w.in.api()
		return w.in
	}
	return w, mainSHA, start
}

// TestGitHubLifecycle drives previewd through a pull request's life with
// signed webhooks from the fake GitHub: opened, synchronize,
// labeled/unlabeled with an excluded label, draft and back, merged (with
// the push to main redeploying production) and closed unmerged.
func TestGitHubLifecycle(t *testing.T) {
	w, mainSHA, start := newGitHubWorld(t, "")
	start()
	w.a.waitStatus("production", env.StatusReady, mainSHA)
	w.waitDeployments("production", map[string]string{mainSHA: "success"})

	// Opened.
	sha1 := w.pushPR(1, "feature-a", map[string]string{"banner.txt": "feature A"})
	w.fake.OpenPR(ghtest.PR{Number: 1, HeadRef: "feature-a", HeadSHA: sha1, Labels: []string{"enhancement"}})
	w.prEvent("opened", 1)
	e := w.a.waitStatus("pr-1", env.StatusReady, sha1)
	if h, code := w.a.health("pr-1"); code != 200 || h.SHA != sha1 || h.Banner != "feature A" {
		t.Errorf("pr-1 serves %d %+v", code, h)
	}
	if e.Kind != env.KindPullRequest || e.Number != 1 || e.Branch != "feature-a" {
		t.Errorf("pr-1 = %+v", e)
	}
	w.waitComment(1, "Preview ready", e.URL, env.ShortSHA(sha1), "pr-1.sqlite")
	w.waitDeployments("preview/pr-1", map[string]string{sha1: "success"})
	for _, d := range w.fake.Deployments() {
		if d.Environment == "preview/pr-1" && d.Statuses[len(d.Statuses)-1].EnvironmentURL != e.URL {
			t.Errorf("deployment's environment_url %q, want %q", d.Statuses[len(d.Statuses)-1].EnvironmentURL, e.URL)
		}
	}
	if n := len(w.ourComments(0)); n != 0 {
		t.Errorf("production got %d comments", n)
	}

	// Synchronize: a new SHA, the old deployment inactive, one comment.
	sha2 := w.pushPR(1, "feature-a", map[string]string{"banner.txt": "feature A, take 2"})
	w.fake.UpdatePR(1, func(pr *ghtest.PR) { pr.HeadSHA = sha2 })
	w.prEvent("synchronize", 1)
	w.a.waitStatus("pr-1", env.StatusReady, sha2)
	w.waitComment(1, "Preview ready", env.ShortSHA(sha2))
	w.waitDeployments("preview/pr-1", map[string]string{sha1: "inactive", sha2: "success"})

	// Labeled with an excluded label: torn down; unlabeled: back.
	w.fake.UpdatePR(1, func(pr *ghtest.PR) { pr.Labels = append(pr.Labels, "no-preview") })
	w.prEvent("labeled", 1)
	w.a.waitGone("pr-1")
	w.waitComment(1, "Preview removed", "process")
	w.waitDeployments("preview/pr-1", map[string]string{sha1: "inactive", sha2: "inactive"})
	w.fake.UpdatePR(1, func(pr *ghtest.PR) { pr.Labels = []string{"enhancement"} })
	w.prEvent("unlabeled", 1)
	w.a.waitStatus("pr-1", env.StatusReady, sha2)
	w.waitComment(1, "Preview ready")
	w.waitDeployments("preview/pr-1", map[string]string{sha1: "inactive", sha2: "success"})

	// Draft and back.
	w.fake.UpdatePR(1, func(pr *ghtest.PR) { pr.Draft = true })
	w.prEvent("converted_to_draft", 1)
	w.a.waitGone("pr-1")
	w.waitComment(1, "Preview removed")
	w.fake.UpdatePR(1, func(pr *ghtest.PR) { pr.Draft = false })
	w.prEvent("ready_for_review", 1)
	w.a.waitStatus("pr-1", env.StatusReady, sha2)
	w.waitComment(1, "Preview ready")

	// A second pull request, closed without merging.
	sha3 := w.pushPR(2, "feature-b", map[string]string{"banner.txt": "feature B"})
	w.fake.OpenPR(ghtest.PR{Number: 2, HeadRef: "feature-b", HeadSHA: sha3})
	w.prEvent("opened", 2)
	w.a.waitStatus("pr-2", env.StatusReady, sha3)
	w.fake.ClosePR(2, false)
	w.prEvent("closed", 2)
	w.a.waitGone("pr-2")
	w.waitComment(2, "Preview removed")
	w.waitDeployments("preview/pr-2", map[string]string{sha3: "inactive"})

	// Merged: pr-1 goes, the push to main redeploys production.
	w.fake.ClosePR(1, true)
	w.prEvent("closed", 1)
	merged := w.repo.commit("main", map[string]string{"banner.txt": "production, with feature A"})
	w.fake.SetBranch("main", merged)
	w.deliver("push", w.fake.PushEvent("main", mainSHA))
	w.a.waitGone("pr-1")
	w.waitComment(1, "Preview removed")
	w.a.waitStatus("production", env.StatusReady, merged)
	if h, _ := w.a.health("production"); h.SHA != merged {
		t.Errorf("production serves %s, want %s", env.ShortSHA(h.SHA), env.ShortSHA(merged))
	}
	w.waitDeployments("production", map[string]string{mainSHA: "inactive", merged: "success"})
	w.waitDeployments("preview/pr-1", map[string]string{sha1: "inactive", sha2: "inactive"})

	// A forged delivery changes nothing.
	code, _, _ := ghtest.Deliver(w.in.client, w.in.base+"/webhooks/github", "not the secret", "pull_request", w.fake.PullRequestEvent("reopened", 1))
	if code != http.StatusUnauthorized {
		t.Errorf("forged delivery answered %d", code)
	}
}

// TestGitHubLostWebhookAndDowntime: a pull request whose webhook was lost
// is found by a sync, and one closed while previewd was down is torn down
// when it starts again, its comment found and edited.
func TestGitHubLostWebhookAndDowntime(t *testing.T) {
	w, mainSHA, start := newGitHubWorld(t, "")
	in := start()
	w.a.waitStatus("production", env.StatusReady, mainSHA)
	sha := w.pushPR(3, "feature-c", map[string]string{"banner.txt": "feature C"})
	w.fake.OpenPR(ghtest.PR{Number: 3, HeadRef: "feature-c", HeadSHA: sha})
	// No webhook: a sync finds it.
	in.sync()
	w.a.waitStatus("pr-3", env.StatusReady, sha)
	w.waitComment(3, "Preview ready")
	// Stop previewd, leaving its result for the cleanup's stop.
	in.cancel()
	err := <-in.done
	in.done <- err

	w.fake.ClosePR(3, false)
	start()
	w.a.waitGone("pr-3")
	w.waitComment(3, "Preview removed")
	w.waitDeployments("preview/pr-3", map[string]string{sha: "inactive"})
}

// TestGitHubWaitForChecks: with waitForChecks, a pull request stays
// pending with the reason until its check is green; the check_run
// delivery brings it to ready.
func TestGitHubWaitForChecks(t *testing.T) {
	w, _, start := newGitHubWorld(t, "    waitForChecks: [ci]\n    commitStatus: true")
	sha := w.pushPR(4, "feature-d", map[string]string{"banner.txt": "feature D"})
	w.fake.SetCheckRun(sha, "ci", "in_progress", "")
	w.fake.OpenPR(ghtest.PR{Number: 4, HeadRef: "feature-d", HeadSHA: sha})
	start()
	w.prEvent("opened", 4)
	eventually(t, 30*time.Second, func() string {
		e, _ := w.a.environment("pr-4")
		if e.Status != env.StatusPending || e.Message != "waiting for checks: ci" {
			return fmt.Sprintf("pr-4 is %s: %q", e.Status, e.Message)
		}
		return ""
	})
	w.waitComment(4, "Preview waiting", "waiting for checks: ci")
	w.fake.SetCheckRun(sha, "ci", "completed", "success")
	w.deliver("check_run", w.fake.CheckRunEvent(sha, "ci"))
	w.a.waitStatus("pr-4", env.StatusReady, sha)
	w.waitComment(4, "Preview ready")
	eventually(t, 30*time.Second, func() string {
		cs := w.fake.CommitStatuses(sha)
		if len(cs) == 0 || cs[len(cs)-1].State != "success" || cs[len(cs)-1].Context != "previewd" {
			return fmt.Sprintf("commit statuses %+v", cs)
		}
		return ""
	})
}

// TestGitHubUnderFaults: with 10% 5xx, some secondary rate limits and 20%
// of API calls slow past the request timeout, pull requests still come
// and go, with one comment each and one deployment per SHA.
func TestGitHubUnderFaults(t *testing.T) {
	w, mainSHA, start := newGitHubWorld(t, "")
	w.fake.SetFaults(ghtest.Faults{ServerErrors: 0.1, SecondaryLimits: 0.03, RetryAfter: 1, Slow: 0.2, Delay: 1500 * time.Millisecond})
	start()
	shas := map[int]string{}
	for n := 1; n <= 3; n++ {
		shas[n] = w.pushPR(n, fmt.Sprintf("f-%d", n), map[string]string{"banner.txt": fmt.Sprint(n)})
		w.fake.OpenPR(ghtest.PR{Number: n, HeadRef: fmt.Sprintf("f-%d", n), HeadSHA: shas[n]})
		w.prEvent("opened", n)
	}
	w.a.waitStatus("production", env.StatusReady, mainSHA)
	for n := 1; n <= 3; n++ {
		w.a.waitStatus(fmt.Sprintf("pr-%d", n), env.StatusReady, shas[n])
	}
	old := shas[1]
	shas[1] = w.pushPR(1, "f-1", map[string]string{"banner.txt": "1b"})
	w.fake.UpdatePR(1, func(pr *ghtest.PR) { pr.HeadSHA = shas[1] })
	w.prEvent("synchronize", 1)
	w.fake.ClosePR(2, true)
	w.prEvent("closed", 2)
	w.a.waitStatus("pr-1", env.StatusReady, shas[1])
	w.a.waitGone("pr-2")

	t0 := time.Now()
	w.waitComment(1, "Preview ready", env.ShortSHA(shas[1]))
	w.waitComment(2, "Preview removed")
	w.waitComment(3, "Preview ready", env.ShortSHA(shas[3]))
	// A notice overtaken by a newer one while GitHub was failing may
	// never have made its deployment: "inactive?" allows that.
	w.waitDeployments("preview/pr-1", map[string]string{old: "inactive?", shas[1]: "success"})
	w.waitDeployments("preview/pr-2", map[string]string{shas[2]: "inactive?"})
	w.waitDeployments("preview/pr-3", map[string]string{shas[3]: "success"})
	w.waitDeployments("production", map[string]string{mainSHA: "success"})
	t.Logf("notices settled %s after the environments; %+v", time.Since(t0).Round(time.Millisecond), w.fake.Stats())
}

// BenchmarkGitHubWebhookToReady measures, for the prebuilt example app on
// the local runtime with SQLite, the time from a signed pull_request
// "opened" delivery to the environment being ready (API read of the pull
// request, fetch of refs/pull/N/head, checkout, database, migrate, start,
// health). Closing each pull request afterwards is not timed.
//
//	go test -run '^$' -bench GitHubWebhookToReady -benchtime 20x ./internal/e2e/
func BenchmarkGitHubWebhookToReady(b *testing.B) {
	app, _ := binaries(b)
	fake := ghtest.New(b, "octocat", "Hello-World")
	r := newRepo(b)
	mainSHA := r.commit("main", nil)
	fake.SetBranch("main", mainSHA)
	in := start(b, githubYAML(b.TempDir(), fake, r.bare, app, ""))
	st := in.d.Store()
	ctx := context.Background()
	wait := func(cond func() bool) {
		t0 := time.Now()
		for !cond() {
			if time.Since(t0) > time.Minute {
				b.Fatal("timed out")
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	wait(func() bool { e, err := st.Get(ctx, "production"); return err == nil && e.Status == env.StatusReady })
	deliver := func(action string, n int) {
		code, body, err := ghtest.Deliver(in.client, in.base+"/webhooks/github", hookSecret, "pull_request", fake.PullRequestEvent(action, n))
		if err != nil || code != http.StatusAccepted {
			b.Fatalf("webhook: %d %s %v", code, body, err)
		}
	}
	var ready []time.Duration
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		b.StopTimer()
		branch := fmt.Sprintf("bench-%d", i)
		sha := r.commit(branch, map[string]string{"banner.txt": branch})
		r.git(r.work, "push", "-q", "-f", "origin", fmt.Sprintf("HEAD:refs/pull/%d/head", i))
		fake.OpenPR(ghtest.PR{Number: i, HeadRef: branch, HeadSHA: sha})
		key := fmt.Sprintf("pr-%d", i)
		b.StartTimer()
		t0 := time.Now()
		deliver("opened", i)
		wait(func() bool {
			e, err := st.Get(ctx, key)
			return err == nil && e.Status == env.StatusReady && e.SHA == sha
		})
		ready = append(ready, time.Since(t0))
		b.StopTimer()
		fake.ClosePR(i, false)
		deliver("closed", i)
		wait(func() bool { e, err := st.Get(ctx, key); return err == nil && e.DeletedAt != nil })
		b.StartTimer()
	}
	b.StopTimer()
	report(b, "ready", ready)
}
