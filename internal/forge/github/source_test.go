package github

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
	"github.com/previewd/previewd/internal/githubapi"
	"github.com/previewd/previewd/internal/testsvc"
)

func sha(n int) string { return fmt.Sprintf("%040x", n) }

// newClient returns a client of fake. Its attempts time out only after the
// default 30s: these tests count requests, and a slow answer on a loaded
// machine must not be sent twice. (githubapi tests the timeouts.)
func newClient(t testing.TB, fake *ghtest.Server) *githubapi.Client {
	t.Helper()
	c, err := githubapi.New(githubapi.Options{APIURL: fake.APIURL(), Owner: fake.Owner, Repo: fake.Repo, Token: "t0ken", Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newSource(t testing.TB, fake *ghtest.Server, o SourceOptions) *Source {
	t.Helper()
	if o.ProductionBranch == "" {
		o.ProductionBranch = "main"
	}
	if o.CloneURL == "" {
		o.CloneURL = "/repo.git"
	}
	if o.Filter.ForkLabel == "" {
		o.Filter.ForkLabel = "preview"
	}
	return NewSource(newClient(t, fake), o)
}

// offline returns a client that is never asked anything.
func offline(t testing.TB, owner, repo string) *githubapi.Client {
	t.Helper()
	c, err := githubapi.New(githubapi.Options{Owner: owner, Repo: repo})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keys(srcs []env.Source) []string {
	var out []string
	for _, s := range srcs {
		out = append(out, s.Key)
	}
	slices.Sort(out)
	return out
}

// TestListPaginationAndETag: 250 open pull requests are listed over three
// pages (following the Link URLs, which switch to /repositories/{id}/);
// listing again with nothing changed is one conditional request answered
// 304, which uses no rate limit; a change is seen on the next listing.
func TestListPaginationAndETag(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.SetBranch("main", sha(1))
	for n := 1; n <= 250; n++ {
		fake.OpenPR(ghtest.PR{Number: n, HeadSHA: sha(1000 + n)})
	}
	s := newSource(t, fake, SourceOptions{})
	ctx := context.Background()
	srcs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 251 {
		t.Fatalf("listed %d, want 250 pull requests and production", len(srcs))
	}
	if got := fake.Count("GET /repositories/{id}/pulls"); got != 2 {
		t.Errorf("followed %d Link pages, want 2", got)
	}
	var pr7 env.Source
	for _, s := range srcs {
		if s.Key == "pr-7" {
			pr7 = s
		}
	}
	want := env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "pr-7", SHA: sha(1007), Repo: "/repo.git", Ref: "refs/pull/7/head", Title: "PR 7", Trusted: true, Base: "main", BaseSHA: sha(1)}
	if pr7 != want {
		t.Errorf("pr-7 = %+v\nwant %+v", pr7, want)
	}

	before := fake.Stats()
	srcs, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := fake.Stats()
	if len(srcs) != 251 {
		t.Fatalf("second listing: %d", len(srcs))
	}
	if reqs, used := after.Requests-before.Requests, after.RateUsed-before.RateUsed; reqs != 2 || used != 0 || after.NotModified-before.NotModified != 2 {
		t.Errorf("unchanged listing: %d requests, %d rate used, %d not modified; want 2 (pulls, branch), 0, 2", reqs, used, after.NotModified-before.NotModified)
	}

	fake.UpdatePR(3, func(pr *ghtest.PR) { pr.HeadSHA = sha(99) })
	fake.ClosePR(250, true)
	srcs, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range srcs {
		got[s.Key] = s.SHA
	}
	if got["pr-3"] != sha(99) || len(srcs) != 250 {
		t.Errorf("after a push and a close: pr-3 at %s, %d listed", got["pr-3"], len(srcs))
	}
	if _, ok := got["pr-250"]; ok {
		t.Error("closed pr-250 still listed")
	}
}

// TestListFullWalk: a pull request closed far down the list (its page
// changes, the first does not) is noticed on the periodic full walk.
func TestListFullWalk(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.SetBranch("main", sha(1))
	for n := 1; n <= 150; n++ {
		fake.OpenPR(ghtest.PR{Number: n, HeadSHA: sha(1000 + n)})
	}
	now := time.Now()
	clock := func() time.Time { return now }
	s := newSource(t, fake, SourceOptions{FullEvery: time.Hour, Now: clock})
	ctx := context.Background()
	if _, err := s.List(ctx); err != nil {
		t.Fatal(err)
	}
	// The least recently updated pull request is on the second page.
	// Closing it takes it out of the open list without changing the
	// first page, which stays a 304: until the next full walk the
	// listing still has it (its webhook, if not lost, removes it sooner).
	fake.ClosePR(1, false)
	srcs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(keys(srcs), "pr-1") {
		t.Fatal("the first page changed; this test needs it not to")
	}
	now = now.Add(2 * time.Hour)
	srcs, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys(srcs), "pr-1") {
		t.Error("closed pr-1 still listed after a full walk")
	}
}

// TestRefresh: Refresh answers from the listing until a webhook marks a
// key stale; then it reads the pull request itself. Closed, merged,
// missing, draft and excluded pull requests are not found.
func TestRefresh(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.SetBranch("main", sha(1))
	fake.OpenPR(ghtest.PR{Number: 1, HeadSHA: sha(11)})
	fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(12)})
	s := newSource(t, fake, SourceOptions{Fresh: time.Hour, Filter: Filter{ExcludeLabels: []string{"no-preview"}}})
	ctx := context.Background()
	if _, err := s.List(ctx); err != nil {
		t.Fatal(err)
	}
	refresh := func(key string) (env.Source, bool) {
		t.Helper()
		src, ok, err := s.Refresh(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return src, ok
	}
	gets := func() int { return fake.Count("GET /repos/{owner}/{repo}/pulls/{n}") }

	fake.UpdatePR(1, func(pr *ghtest.PR) { pr.HeadSHA = sha(21) })
	if src, ok := refresh("pr-1"); !ok || src.SHA != sha(11) || gets() != 0 {
		t.Errorf("fresh listing: %v %s, %d GETs; want the listed SHA and no request", ok, src.SHA, gets())
	}
	s.Invalidate("pr-1")
	if src, ok := refresh("pr-1"); !ok || src.SHA != sha(21) || gets() != 1 {
		t.Errorf("after Invalidate: %v %s, %d GETs", ok, src.SHA, gets())
	}
	// The stale mark is spent; an unchanged pull request is a 304.
	s.Invalidate("pr-1")
	before := fake.Stats()
	refresh("pr-1")
	if d := fake.Stats().NotModified - before.NotModified; d != 1 {
		t.Errorf("re-reading an unchanged pull request: %d 304s, want 1", d)
	}

	for name, change := range map[string]func(*ghtest.PR){
		"draft":    func(pr *ghtest.PR) { pr.Draft = true },
		"excluded": func(pr *ghtest.PR) { pr.Labels = []string{"No-Preview"} },
		"closed":   func(pr *ghtest.PR) { pr.State = "closed" },
		"merged":   func(pr *ghtest.PR) { pr.State, pr.Merged = "closed", true },
	} {
		fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(12)})
		s.Invalidate("pr-2")
		if _, ok := refresh("pr-2"); !ok {
			t.Fatalf("%s: open pr-2 not found", name)
		}
		fake.UpdatePR(2, change)
		s.Invalidate("pr-2")
		if _, ok := refresh("pr-2"); ok {
			t.Errorf("%s: pr-2 still found", name)
		}
	}
	// A key that is not a pull request's, or a missing one.
	for _, k := range []string{"pr-999", "pr-0", "pr-01", "feature-x"} {
		s.Invalidate(k)
		if _, ok := refresh(k); ok {
			t.Errorf("%s found", k)
		}
	}
	// What Refresh read wins over an older listing: a listing whose 304
	// still has pr-2 open does not bring it back.
	srcs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys(srcs), "pr-2") {
		t.Error("merged pr-2 listed again")
	}

	// Production follows the branch, with a push seen once invalidated.
	if src, ok := refresh("production"); !ok || src.SHA != sha(1) || src.Ref != "refs/heads/main" || src.Kind != env.KindProduction {
		t.Errorf("production = %+v %v", src, ok)
	}
	fake.SetBranch("main", sha(2))
	s.Invalidate("production")
	if src, _ := refresh("production"); src.SHA != sha(2) {
		t.Errorf("production after a push: %s", src.SHA)
	}
}

// TestRefreshWithoutListing: before any listing, or when the last one is
// old, Refresh reads from GitHub.
func TestRefreshWithoutListing(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 5, HeadSHA: sha(5)})
	s := newSource(t, fake, SourceOptions{})
	src, ok, err := s.Refresh(context.Background(), "pr-5")
	if err != nil || !ok || src.SHA != sha(5) {
		t.Fatalf("Refresh = %+v %v %v", src, ok, err)
	}
	if _, ok, err := s.Refresh(context.Background(), "production"); ok || err != nil {
		t.Errorf("production without a branch: %v %v", ok, err)
	}
}

// TestForksFromRecording runs the recorded list of three fork pull
// requests (jenkinsci) through the source's filter: none is deployed
// without the label, and labelled ones are untrusted unless configured.
func TestForksFromRecording(t *testing.T) {
	var pulls []*pull
	if err := json.Unmarshal(ghtest.Fixture("rest/recorded/jenkinsci/pulls-list-open-from-forks.body.json"), &pulls); err != nil {
		t.Fatal(err)
	}
	c := offline(t, "cloudbeers", "yolo")
	for _, trust := range []bool{false, true} {
		s := NewSource(c, SourceOptions{Filter: Filter{ForkLabel: "preview", TrustForks: trust}})
		for _, pr := range pulls {
			if _, ok := s.toSource(pr); ok {
				t.Errorf("fork #%d deployed without the label", pr.Number)
			}
			pr.Labels = append(pr.Labels, struct {
				Name string `json:"name"`
			}{"preview"})
			src, ok := s.toSource(pr)
			if !ok || !src.Fork || src.Trusted != trust {
				t.Errorf("labelled fork #%d: ok=%v fork=%v trusted=%v, want trusted=%v", pr.Number, ok, src.Fork, src.Trusted, trust)
			}
			pr.Labels = pr.Labels[:len(pr.Labels)-1]
		}
	}
	// A same-repository branch of a repository that is itself a fork (the
	// drone delivery) is not a fork pull request.
	var d struct {
		PullRequest *pull `json:"pull_request"`
	}
	json.Unmarshal(ghtest.Fixture("webhooks/pull_request.edited.json"), &d)
	s := NewSource(offline(t, "bradrydzewski", "drone-test-go"), SourceOptions{Filter: Filter{ForkLabel: "preview"}})
	if src, ok := s.toSource(d.PullRequest); !ok || src.Fork || !src.Trusted {
		t.Errorf("same-repo pull request of a forked repo: ok=%v %+v", ok, src)
	}
}

// TestWaitForChecks: a SHA is held until every named check run or status
// is green, with the reason.
func TestWaitForChecks(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 1, HeadSHA: sha(1)})
	s := newSource(t, fake, SourceOptions{WaitForChecks: []string{"ci", "lint"}})
	hold := func() string {
		t.Helper()
		s.Invalidate("pr-1")
		src, ok, err := s.Refresh(context.Background(), "pr-1")
		if err != nil || !ok {
			t.Fatalf("Refresh: %v %v", ok, err)
		}
		return src.Hold
	}
	steps := []struct {
		do   func()
		want string
	}{
		{func() {}, "waiting for checks: ci, lint"},
		{func() { fake.SetCheckRun(sha(1), "ci", "in_progress", "") }, "waiting for checks: ci, lint"},
		{func() { fake.SetCommitStatus(sha(1), "lint", "pending") }, "waiting for checks: ci, lint"},
		{func() { fake.SetCheckRun(sha(1), "ci", "completed", "success") }, "waiting for checks: lint"},
		{func() { fake.SetCommitStatus(sha(1), "lint", "failure") }, "checks failed: lint"},
		{func() { fake.SetCommitStatus(sha(1), "lint", "success") }, ""},
		// Green is remembered for the SHA.
		{func() { fake.SetCheckRun(sha(1), "ci", "completed", "failure") }, ""},
	}
	listedHold := func() string {
		t.Helper()
		srcs, err := s.List(context.Background())
		if err != nil || len(srcs) != 1 {
			t.Fatalf("List: %v %v", srcs, err)
		}
		return srcs[0].Hold
	}
	if got := listedHold(); got != "waiting for checks: ci, lint" {
		t.Errorf("listing before any check was read: hold %q", got)
	}
	for i, st := range steps {
		st.do()
		if got := hold(); got != st.want {
			t.Errorf("step %d: hold %q, want %q", i, got, st.want)
		}
		// A listing reports the last hold found, without reading checks,
		// so that the reconciler re-reads held keys.
		if got := listedHold(); got != st.want {
			t.Errorf("step %d: listed hold %q, want %q", i, got, st.want)
		}
	}
}

// TestGitEnv: git fetches with the token as an HTTP header scoped to the
// clone URL's host, never on its command line.
func TestGitEnv(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testsvc.SkipUnlessCI(t, "no git: %v", err)
	}
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer srv.Close()
	c, err := githubapi.New(githubapi.Options{Owner: "o", Repo: "r", Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewSource(c, SourceOptions{CloneURL: srv.URL + "/o/r.git"}).GitEnv(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range e {
		if strings.Contains(kv, "s3cret") {
			t.Errorf("token in clear in %q", kv)
		}
	}
	cmd := exec.Command("git", "ls-remote", "--", srv.URL+"/o/r.git")
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	cmd.Env = append(cmd.Env, e...)
	cmd.Run()
	if got.Load() != "Basic eC1hY2Nlc3MtdG9rZW46czNjcmV0" { // x-access-token:s3cret
		t.Errorf("git sent Authorization %q", got.Load())
	}
	// Another host gets nothing.
	got.Store("")
	other := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	cmd = exec.Command("git", "ls-remote", "--", other+"/o/r.git")
	cmd.Env = append(append(os.Environ(), "GIT_TERMINAL_PROMPT=0"), e...)
	cmd.Run()
	if got.Load() != "" {
		t.Errorf("git sent the token to another host: %q", got.Load())
	}
	// A local clone URL needs no credentials.
	if e, _ := NewSource(c, SourceOptions{CloneURL: "/srv/repo.git"}).GitEnv(context.Background()); e != nil {
		t.Errorf("GitEnv for a path = %q", e)
	}
}

// TestKeepLabel: a pull request carrying lifecycle.keepLabel (any case)
// is kept. A labeled or unlabeled delivery (the recorded ones, through
// the webhook) makes Refresh read the pull request again, and the next
// listing sees the change too.
func TestKeepLabel(t *testing.T) {
	fake := ghtest.New(t, "Codertocat", "Hello-World")
	fake.SetBranch("main", sha(1))
	fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	fake.OpenPR(ghtest.PR{Number: 3, HeadSHA: sha(3), Labels: []string{"Preview:Keep"}})
	s := newSource(t, fake, SourceOptions{Fresh: time.Hour, KeepLabel: "preview:keep"})
	var q recorder
	hook := NewWebhook(WebhookOptions{Secret: secret, Owner: fake.Owner, Repo: fake.Repo, ProductionBranch: "main", Enqueue: q.enqueue, Source: s})
	ctx := context.Background()
	kept := func(srcs []env.Source) map[string]bool {
		out := map[string]bool{}
		for _, src := range srcs {
			out[src.Key] = src.Keep
		}
		return out
	}
	listed := func() map[string]bool {
		t.Helper()
		srcs, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return kept(srcs)
	}
	refreshed := func(key string) bool {
		t.Helper()
		src, ok, err := s.Refresh(ctx, key)
		if err != nil || !ok {
			t.Fatalf("Refresh(%s) = %v, %v", key, ok, err)
		}
		return src.Keep
	}
	deliver := func(fixture string) {
		t.Helper()
		body := ghtest.Fixture("webhooks/" + fixture)
		req := httptest.NewRequest(http.MethodPost, "/webhooks/github", strings.NewReader(string(body)))
		req.Header.Set("X-GitHub-Event", "pull_request")
		req.Header.Set("X-Hub-Signature-256", Sign(secret, body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		hook.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", fixture, w.Code, w.Body)
		}
	}
	if got := listed(); got["pr-2"] || !got["pr-3"] || got["production"] {
		t.Fatalf("first listing: keep = %v; want only pr-3", got)
	}

	// The recorded delivery labels pull request 2 of Codertocat/Hello-World.
	fake.UpdatePR(2, func(pr *ghtest.PR) { pr.Labels = []string{"bug", "preview:keep"} })
	deliver("pull_request.labeled.json")
	if !slices.Contains(q.got(), "pr-2") {
		t.Fatalf("labeled delivery enqueued %v", q.got())
	}
	if !refreshed("pr-2") {
		t.Error("after labeled: Refresh does not keep pr-2")
	}
	if got := listed(); !got["pr-2"] || !got["pr-3"] {
		t.Errorf("listing after labeled: keep = %v", got)
	}

	fake.UpdatePR(2, func(pr *ghtest.PR) { pr.Labels = []string{"bug"} })
	deliver("pull_request.unlabeled.json")
	if refreshed("pr-2") {
		t.Error("after unlabeled: Refresh still keeps pr-2")
	}
	// Without a webhook, the listing sees a label taken off too.
	fake.UpdatePR(3, func(pr *ghtest.PR) { pr.Labels = nil })
	if got := listed(); got["pr-2"] || got["pr-3"] {
		t.Errorf("listing after unlabeling both: keep = %v", got)
	}

	// With no keepLabel configured, no label keeps.
	off := newSource(t, fake, SourceOptions{})
	fake.UpdatePR(3, func(pr *ghtest.PR) { pr.Labels = []string{"preview:keep"} })
	srcs, err := off.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := kept(srcs); got["pr-3"] {
		t.Errorf("no keepLabel: keep = %v", got)
	}
}
