package notify

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
	"github.com/previewd/previewd/internal/githubapi"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func sha(n int) string { return fmt.Sprintf("%040x", n) }

func notice(key string, status env.Status, mod func(*env.Notice)) env.Notice {
	n := env.Notice{
		Env: env.Environment{
			Key: key, Kind: env.KindPullRequest, Number: 7, Branch: "feature/login", SHA: "3f2a9c1d0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49",
			Status: status, URL: "http://pr-7.preview.example.com", Database: "pr-7.sqlite",
		},
		Took: 2345 * time.Millisecond,
	}
	n.Source = env.Source{Key: key, Kind: env.KindPullRequest, Number: 7, SHA: n.Env.SHA}
	if mod != nil {
		mod(&n)
	}
	return n
}

// TestRender compares the comment for each phase with its golden file
// (go test ./internal/notify -run Render -update rewrites them).
func TestRender(t *testing.T) {
	deleted := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// The lifecycle: last active at noon, 72 h of ttl, the warning
	// rendered 12 h (and a few seconds) before.
	now := time.Date(2026, 1, 4, 0, 0, 3, 0, time.UTC)
	active := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	expires := active.Add(72 * time.Hour)
	removedAt := expires.Add(40 * time.Second)
	usage := env.Usage{RunSeconds: 12000, CPUSeconds: 1440, GBSeconds: 2160, PeakMemoryBytes: 180e6, Since: active}.Priced(env.Rates{CPUHour: 0.04, GBHour: 0.005})
	tests := map[string]env.Notice{
		"waiting":  notice("pr-7", env.StatusPending, func(n *env.Notice) { n.Env.Message = "waiting for checks: ci, lint" }),
		"building": notice("pr-7", env.StatusBuilding, func(n *env.Notice) { n.Env.Message = "building 3f2a9c1" }),
		"building for a while": notice("pr-7", env.StatusBuilding, func(n *env.Notice) {
			n.Env.Message, n.Env.UpdatedAt = "building 3f2a9c1", now.Add(-80*time.Second)
		}),
		"migrating": notice("pr-7", env.StatusMigrating, nil),
		"starting":  notice("pr-7", env.StatusStarting, nil),
		"ready":     notice("pr-7", env.StatusReady, func(n *env.Notice) { n.Env.Message = "3f2a9c1 ready in 2.345s" }),
		"ready with notes": notice("pr-7", env.StatusReady, func(n *env.Notice) {
			n.Env.Message = "3f2a9c1 ready in 2.345s\ndatabase tier changed from schema to clone; data re-created\nlabel preview:db=`gold` ignored: unknown database tier \"`gold`\"; the database stays at tier clone"
		}),
		"failed": notice("pr-7", env.StatusFailed, func(n *env.Notice) {
			n.Env.Message = "migrate of 3f2a9c1 failed: exit status 1; still serving 1a2b3c4\nError: relation \"users\" already exists"
			n.Tail = "==> migrate 3f2a9c1\napplying 0002_users.sql\nError: relation \"users\" already exists\n``` not a fence ```\n"
		}),
		"removing": notice("pr-7", env.StatusDeleting, func(n *env.Notice) { n.Env.Message = "removing" }),
		"removed": notice("pr-7", env.StatusDeleting, func(n *env.Notice) {
			n.Env.DeletedAt = &deleted
			n.Removed = []string{"process", "work dir", "database file"}
			n.Took = 180 * time.Millisecond
		}),
		"removal retrying": notice("pr-7", env.StatusDeleting, func(n *env.Notice) {
			n.Env.Message = "removal failed and is being retried: database: dropping schema preview_pr_7: connection refused"
			n.Removed = []string{"process", "work dir"}
			n.Left = []string{"role preview_pr_7", "schema preview_pr_7"}
		}),
		"queued": notice("pr-7", env.StatusQueued, func(n *env.Notice) { n.Env.Message = "queued: 2nd of 3" }),
		"sleeping": notice("pr-7", env.StatusSleeping, func(n *env.Notice) {
			n.Env.Message = "sleeping after 30 m without activity"
			n.Env.Usage = &usage
		}),
		"ready with cost": notice("pr-7", env.StatusReady, func(n *env.Notice) { n.Env.Usage = &usage }),
		"ready kept":      notice("pr-7", env.StatusReady, func(n *env.Notice) { n.Env.Kept = true }),
		"ready with rehearsal": notice("pr-7", env.StatusReady, func(n *env.Notice) {
			r := env.Rehearsal{SHA: n.Env.SHA, Engine: "postgres", From: "a clone of template app_template", Observed: "statements and their times from pg_stat_statements",
				Seconds: 1.84, StatementCount: 3,
				Statements: []env.RehearsalStatement{{Query: "ALTER TABLE orders ALTER COLUMN total TYPE bigint", Seconds: 1.6, Lock: "AccessExclusiveLock", Table: "orders"},
					{Query: "ALTER TABLE users DROP COLUMN legacy_id", Seconds: 0.01, Lock: "AccessExclusiveLock", Table: "users"}},
				Tables: []env.RehearsalTable{{Name: "orders", Rows: 1200000, Rewritten: true, Lock: "AccessExclusiveLock", LockSeconds: 1.6},
					{Name: "users`|x", Rows: 5000, Lock: "AccessExclusiveLock", LockSeconds: 0.01}},
				Findings: []env.RehearsalFinding{{Kind: env.FindingRewrite, Table: "orders"}, {Kind: env.FindingLock, Table: "orders", Seconds: 1.6, Detail: "ACCESS EXCLUSIVE for 1.6 s"},
					{Kind: env.FindingDropColumn, Table: "users`|x", Column: "legacy_id"}},
				Failing: []string{"drop", "rewrite"}}
			n.Env.Rehearsal = &r
		}),
		"failed in rehearsal": notice("pr-7", env.StatusFailed, func(n *env.Notice) {
			n.Env.Message = "migration rehearsal of 3f2a9c1 failed: canceling statement due to lock timeout"
			r := env.Rehearsal{SHA: n.Env.SHA, Engine: "postgres", From: "a schema-only copy of production's database app", Observed: "locks and running statements sampled every 5ms from pg_locks and pg_stat_activity",
				Seconds: 5.2, StatementCount: -1, Error: "migration \"ALTER TABLE orders ADD COLUMN flag boolean\": ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)",
				TimedOut: true, WaitedFor: "ACCESS EXCLUSIVE on `orders`, held by 4242 (idle in transaction: SELECT count(*) FROM orders)",
				Findings: []env.RehearsalFinding{{Kind: env.FindingTimeout}, {Kind: env.FindingFailed}}, Failing: []string{"failed", "timeout"}}
			n.Env.Rehearsal = &r
		}),
		"ttl warning": notice("pr-7", env.StatusReady, func(n *env.Notice) {
			n.Env.LastActivityAt, n.Env.ExpiresAt, n.Warning = &active, &expires, &expires
		}),
		"ttl warning while sleeping": notice("pr-7", env.StatusSleeping, func(n *env.Notice) {
			n.Env.LastActivityAt, n.Env.ExpiresAt, n.Warning = &active, &expires, &expires
		}),
		"expiring": notice("pr-7", env.StatusDeleting, func(n *env.Notice) {
			n.Env.LastActivityAt, n.Env.ExpiresAt, n.Expired = &active, &expires, true
		}),
		"expired": notice("pr-7", env.StatusDeleting, func(n *env.Notice) {
			n.Env.LastActivityAt, n.Env.ExpiresAt, n.Env.DeletedAt, n.Expired = &active, &expires, &removedAt, true
			n.Removed = []string{"process", "work dir", "database file"}
			n.Env.Usage = &usage
			n.Took = 180 * time.Millisecond
		}),
	}
	for name, n := range tests {
		t.Run(name, func(t *testing.T) {
			got := Render(n, "https://previewd.example.com/", now)
			path := filepath.Join("testdata", strings.ReplaceAll(name, " ", "-")+".golden")
			if *update {
				os.MkdirAll("testdata", 0o755)
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("comment differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
			if !strings.HasPrefix(got, "<!-- previewd:pr-7 -->\n") {
				t.Error("comment does not start with its marker")
			}
		})
	}
}

func TestCode(t *testing.T) {
	for in, want := range map[string]string{
		"plain":     "`plain`",
		"a`b":       "`` a`b ``",
		"``x":       "``` ``x ```",
		"":          "",
		"<b>x</b>|": "`<b>x</b>|`",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}

// newNotifier returns a running notifier that talks to fake. Its attempts
// time out after the default 30s, unless the fake is slowed on purpose:
// these tests count what GitHub holds, and on a loaded machine a slow
// answer must not be taken for a lost one.
func newNotifier(t testing.TB, fake *ghtest.Server, commitStatus bool) *GitHub {
	t.Helper()
	return newNotifierTimeout(t, fake, commitStatus, 0)
}

func newNotifierTimeout(t testing.TB, fake *ghtest.Server, commitStatus bool, timeout time.Duration) *GitHub {
	t.Helper()
	c, err := githubapi.New(githubapi.Options{
		APIURL: fake.APIURL(), Owner: fake.Owner, Repo: fake.Repo, Token: "t",
		RequestTimeout: timeout, Backoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGitHub(GitHubOptions{Client: c, Deployments: true, CommitStatus: commitStatus, DashboardURL: "https://previewd.example.com", Backoff: 10 * time.Millisecond})
	run(t, g)
	return g
}

// run runs g until the test ends.
func run(t testing.TB, g *GitHub) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	for !g.runs() {
		time.Sleep(time.Millisecond)
	}
}

// runs reports whether Run has begun.
func (g *GitHub) runs() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ctx != nil
}

// sizes returns how many entries the notifier's maps hold.
func (g *GitHub) sizes() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return map[string]int{"pending": len(g.pending), "running": len(g.running), "shown": len(g.shown)}
}

// TestOneComment: many notices, sent concurrently, and a restart (a new
// notifier that has to find the comment among 150 others, on the second
// page) leave exactly one comment, edited to the latest notice.
func TestOneComment(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 7, HeadSHA: sha(7)})
	for i := 0; i < 150; i++ {
		fake.AddComment(7, "someone", fmt.Sprintf("comment %d; quoting <!-- previewd:pr-7 --> is not the marker", i))
	}
	ctx := context.Background()
	g := newNotifier(t, fake, false)
	var wg sync.WaitGroup
	for _, st := range []env.Status{env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusReady} {
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.Notify(ctx, notice("pr-7", st, nil))
			}()
		}
	}
	wg.Wait()
	g.Notify(ctx, notice("pr-7", env.StatusReady, nil))
	g.Wait()
	ours := func() []ghtest.Comment {
		var out []ghtest.Comment
		for _, c := range fake.Comments(7) {
			if strings.HasPrefix(c.Body, Marker("pr-7")) {
				out = append(out, c)
			}
		}
		return out
	}
	if cs := ours(); len(cs) != 1 || !strings.Contains(cs[0].Body, "Preview ready") {
		t.Fatalf("comments after many notices: %d %v", len(cs), cs)
	}
	// Restart: the new notifier finds the comment on page 2 and edits it.
	g2 := newNotifier(t, fake, false)
	g2.Notify(ctx, notice("pr-7", env.StatusBuilding, func(n *env.Notice) { n.Env.SHA = sha(8) }))
	g2.Wait()
	cs := ours()
	if len(cs) != 1 || !strings.Contains(cs[0].Body, "Preview building") || !strings.Contains(cs[0].Body, env.ShortSHA(sha(8))) {
		t.Fatalf("after a restart: %d comments: %v", len(cs), cs)
	}
	if n := len(fake.Comments(7)); n != 151 {
		t.Errorf("%d comments in all, want 151", n)
	}
}

// TestDeployments: one deployment per (SHA, environment), found again
// after a restart; statuses go in_progress -> success with the URL; a
// new SHA's success makes the old one inactive; removal makes all
// inactive. Production gets deployments but no comment.
func TestDeployments(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 7, HeadSHA: sha(1)})
	ctx := context.Background()
	send := func(g *GitHub, n env.Notice) {
		t.Helper()
		g.Notify(ctx, n)
		g.Wait()
	}
	at := func(s string) func(*env.Notice) {
		return func(n *env.Notice) { n.Env.SHA, n.Source.SHA = s, s }
	}
	g := newNotifier(t, fake, true)
	for _, st := range []env.Status{env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusReady} {
		send(g, notice("pr-7", st, at(sha(1))))
	}
	// A restart re-announces the same SHA.
	g = newNotifier(t, fake, true)
	send(g, notice("pr-7", env.StatusReady, at(sha(1))))
	ds := fake.Deployments()
	if len(ds) != 1 {
		t.Fatalf("%d deployments, want 1: %+v", len(ds), ds)
	}
	d := ds[0]
	if d.SHA != sha(1) || d.Ref != sha(1) || d.Environment != "preview/pr-7" || !d.Transient || d.Production || d.AutoMerge || !d.RequiredContextsWasSet || len(d.RequiredContexts) != 0 {
		t.Errorf("deployment = %+v", d)
	}
	var states []string
	for _, s := range d.Statuses {
		states = append(states, s.State)
	}
	if strings.Join(states, ",") != "in_progress,success" && strings.Join(states, ",") != "in_progress,success,success" {
		t.Errorf("statuses %v", states)
	}
	if last := d.Statuses[len(d.Statuses)-1]; last.EnvironmentURL != "http://pr-7.preview.example.com" || last.LogURL != "https://previewd.example.com/environments/pr-7" {
		t.Errorf("success status = %+v", last)
	}
	if cs := fake.CommitStatuses(sha(1)); len(cs) == 0 || cs[len(cs)-1].State != "success" || cs[len(cs)-1].Context != "previewd" {
		t.Errorf("commit statuses = %+v", cs)
	}

	// A new SHA: a second deployment; once it succeeds the first is
	// inactive. A failed SHA stays failed.
	send(g, notice("pr-7", env.StatusBuilding, at(sha(2))))
	send(g, notice("pr-7", env.StatusFailed, at(sha(2))))
	send(g, notice("pr-7", env.StatusBuilding, at(sha(3))))
	send(g, notice("pr-7", env.StatusReady, at(sha(3))))
	byState := map[string]string{}
	for _, d := range fake.Deployments() {
		byState[d.SHA] = d.State()
	}
	if byState[sha(1)] != "inactive" || byState[sha(2)] != "failure" || byState[sha(3)] != "success" || len(byState) != 3 {
		t.Errorf("deployments by SHA: %v", byState)
	}

	// Removal: all inactive, comment says removed.
	g = newNotifier(t, fake, true)
	deleted := time.Now()
	send(g, notice("pr-7", env.StatusDeleting, func(n *env.Notice) {
		n.Env.DeletedAt, n.Removed = &deleted, []string{"process"}
	}))
	for _, d := range fake.Deployments() {
		if want := map[string]string{sha(1): "inactive", sha(2): "failure", sha(3): "inactive"}[d.SHA]; d.State() != want {
			t.Errorf("after removal %s is %s, want %s", env.ShortSHA(d.SHA), d.State(), want)
		}
	}
	if cs := fake.Comments(7); len(cs) != 1 || !strings.Contains(cs[0].Body, "Preview removed") {
		t.Errorf("comments after removal: %+v", cs)
	}

	// Production: a deployment to "production", no comment.
	prod := env.Notice{Env: env.Environment{Key: "production", Kind: env.KindProduction, Branch: "main", SHA: sha(9), Status: env.StatusReady, URL: "http://production.example.com"}}
	send(g, prod)
	send(newNotifier(t, fake, true), prod)
	var pd []ghtest.Deployment
	for _, d := range fake.Deployments() {
		if d.Environment == "production" {
			pd = append(pd, d)
		}
	}
	if len(pd) != 1 || !pd[0].Production || pd[0].Transient || pd[0].State() != "success" {
		t.Errorf("production deployments: %+v", pd)
	}
}

// TestNotifyUnderFaults: with 5xx, secondary limits and 20% slow or lost
// answers, the latest notice still arrives, with one comment and one
// deployment per SHA.
func TestNotifyUnderFaults(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	for n := 1; n <= 4; n++ {
		fake.OpenPR(ghtest.PR{Number: n, HeadSHA: sha(n)})
	}
	fake.SetFaults(ghtest.Faults{ServerErrors: 0.1, SecondaryLimits: 0.02, RetryAfter: 1, Slow: 0.2, Delay: 400 * time.Millisecond})
	g := newNotifierTimeout(t, fake, false, 300*time.Millisecond)
	ctx := context.Background()
	for _, st := range []env.Status{env.StatusBuilding, env.StatusStarting, env.StatusReady} {
		for n := 1; n <= 4; n++ {
			key := fmt.Sprintf("pr-%d", n)
			g.Notify(ctx, notice(key, st, func(x *env.Notice) {
				x.Env.Number, x.Source.Number, x.Env.SHA = n, n, sha(n)
			}))
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.Wait()
	fake.SetFaults(ghtest.Faults{})
	for n := 1; n <= 4; n++ {
		cs := fake.Comments(n)
		if len(cs) != 1 || !strings.Contains(cs[0].Body, "Preview ready") {
			t.Errorf("pr-%d: %d comments: %+v", n, len(cs), cs)
		}
	}
	count := map[string]int{}
	for _, d := range fake.Deployments() {
		count[d.Environment+"@"+d.SHA]++
		if d.State() != "success" {
			t.Errorf("%s at %s is %s", d.Environment, env.ShortSHA(d.SHA), d.State())
		}
	}
	if len(count) != 4 {
		t.Errorf("deployments: %v", count)
	}
	for k, c := range count {
		if c != 1 {
			t.Errorf("%s deployed %d times", k, c)
		}
	}
}

// TestForgetsRemoved: what the notifier remembers of an environment goes
// once its removal has been told, so memory does not grow with every pull
// request ever seen.
func TestForgetsRemoved(t *testing.T) {
	const prs = 20
	fake := ghtest.New(t, "octocat", "Hello-World")
	for n := 1; n <= prs; n++ {
		fake.OpenPR(ghtest.PR{Number: n, HeadSHA: sha(n)})
	}
	g := newNotifier(t, fake, true)
	ctx := context.Background()
	at := func(n int, mod func(*env.Notice)) func(*env.Notice) {
		return func(x *env.Notice) {
			x.Env.Key, x.Source.Key = env.PullRequestKey(n), env.PullRequestKey(n)
			x.Env.Number, x.Source.Number, x.Env.SHA, x.Source.SHA = n, n, sha(n), sha(n)
			if mod != nil {
				mod(x)
			}
		}
	}
	for _, st := range []env.Status{env.StatusBuilding, env.StatusReady} {
		for n := 1; n <= prs; n++ {
			g.Notify(ctx, notice(env.PullRequestKey(n), st, at(n, nil)))
		}
		g.Wait()
	}
	if got := g.sizes()["shown"]; got != prs {
		t.Fatalf("%d environments remembered while open, want %d", got, prs)
	}
	deleted := time.Now()
	for n := 1; n <= prs; n++ {
		g.Notify(ctx, notice(env.PullRequestKey(n), env.StatusDeleting, at(n, func(x *env.Notice) {
			x.Env.DeletedAt, x.Removed = &deleted, []string{"process"}
		})))
	}
	g.Wait()
	for name, size := range g.sizes() {
		if size != 0 {
			t.Errorf("%s holds %d entries after every environment was removed", name, size)
		}
	}
	for n := 1; n <= prs; n++ {
		if cs := fake.Comments(n); len(cs) != 1 || !strings.Contains(cs[0].Body, "Preview removed") {
			t.Errorf("pr-%d: comments %+v", n, cs)
		}
	}
	for _, d := range fake.Deployments() {
		if d.State() != "inactive" {
			t.Errorf("%s is %s after removal", d.Environment, d.State())
		}
	}
}

// TestRunLifecycle: a notice queued before Run is sent once Run starts;
// after Run's context ends, Notify refuses notices and keeps none.
func TestRunLifecycle(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 7, HeadSHA: sha(7)})
	c, err := githubapi.New(githubapi.Options{APIURL: fake.APIURL(), Owner: fake.Owner, Repo: fake.Repo, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGitHub(GitHubOptions{Client: c})
	if err := g.Notify(context.Background(), notice("pr-7", env.StatusReady, nil)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx)
	}()
	for !g.runs() {
		time.Sleep(time.Millisecond)
	}
	g.Wait()
	if cs := fake.Comments(7); len(cs) != 1 || !strings.Contains(cs[0].Body, "Preview ready") {
		t.Fatalf("comments after Run started: %+v", cs)
	}
	cancel()
	<-done
	if err := g.Notify(context.Background(), notice("pr-7", env.StatusBuilding, nil)); err == nil {
		t.Error("Notify after Run ended: no error")
	}
	for name, size := range g.sizes() {
		if name != "shown" && size != 0 {
			t.Errorf("%s holds %d entries after Run ended", name, size)
		}
	}
}

// TestLifecycleDeployments: a queued preview's deployment is queued and
// its commit pending; a sleeping one's deployment is inactive while its
// commit keeps its success; woken, the same deployment succeeds again.
func TestLifecycleDeployments(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 7, HeadSHA: sha(1)})
	ctx := context.Background()
	g := newNotifier(t, fake, true)
	send := func(st env.Status, mod func(*env.Notice)) {
		t.Helper()
		g.Notify(ctx, notice("pr-7", st, func(n *env.Notice) {
			n.Env.SHA, n.Source.SHA = sha(1), sha(1)
			if mod != nil {
				mod(n)
			}
		}))
		g.Wait()
	}
	state := func() (deployment, commit string, body string) {
		t.Helper()
		ds := fake.Deployments()
		if len(ds) != 1 {
			t.Fatalf("%d deployments, want 1: %+v", len(ds), ds)
		}
		cs := fake.CommitStatuses(sha(1))
		if len(cs) > 0 {
			commit = cs[len(cs)-1].State
		}
		for _, c := range fake.Comments(7) {
			if strings.HasPrefix(c.Body, Marker("pr-7")) {
				body = c.Body
			}
		}
		return ds[0].State(), commit, body
	}
	send(env.StatusQueued, func(n *env.Notice) { n.Env.Message = "queued: 1st of 2" })
	if d, c, body := state(); d != "queued" || c != "pending" || !strings.Contains(body, "`queued: 1st of 2`") {
		t.Errorf("queued: deployment %s, commit %s, comment:\n%s", d, c, body)
	}
	ready := time.Now()
	send(env.StatusStarting, nil)
	send(env.StatusReady, func(n *env.Notice) { n.Env.ReadyAt = &ready })
	if d, c, _ := state(); d != "success" || c != "success" {
		t.Errorf("ready: deployment %s, commit %s", d, c)
	}
	send(env.StatusSleeping, func(n *env.Notice) { n.Env.ReadyAt = &ready })
	if d, c, body := state(); d != "inactive" || c != "success" || !strings.Contains(body, "Preview sleeping") {
		t.Errorf("sleeping: deployment %s, commit %s, comment:\n%s", d, c, body)
	}
	// Woken, but queued behind the cap: its SHA was deployed, so the
	// commit keeps its success.
	send(env.StatusQueued, func(n *env.Notice) { n.Env.ReadyAt, n.Env.Message = &ready, "queued: 1st of 1" })
	if d, c, _ := state(); d != "queued" || c != "success" {
		t.Errorf("woken and queued: deployment %s, commit %s", d, c)
	}
	send(env.StatusReady, func(n *env.Notice) { n.Env.ReadyAt = &ready })
	var states []string
	for _, s := range fake.Deployments()[0].Statuses {
		states = append(states, s.State)
	}
	if got := strings.Join(states, ","); got != "queued,in_progress,success,inactive,queued,success" {
		t.Errorf("deployment statuses %s", got)
	}
}

// TestWarningAndIdle: the TTL warning and the expiry say only what the
// notice knows.
func TestWarningAndIdle(t *testing.T) {
	at := time.Date(2026, 1, 4, 12, 0, 0, 0, time.UTC)
	active := at.Add(-72 * time.Hour)
	tail := ". Keep it with a push, `/preview extend 3d` or `/preview keep`.\n\n"
	tests := map[string]struct {
		active *time.Time
		now    time.Time
		want   string
	}{
		"everything":        {&active, at.Add(-12 * time.Hour), "⏳ This preview will be removed at 2026-01-04 12:00 UTC (in 12 h) after 3 d without activity" + tail},
		"soon":              {&active, at.Add(-90*time.Second - 20*time.Second), "⏳ This preview will be removed at 2026-01-04 12:00 UTC (in 2 m) after 3 d without activity" + tail},
		"no clock":          {&active, time.Time{}, "⏳ This preview will be removed at 2026-01-04 12:00 UTC after 3 d without activity" + tail},
		"past due":          {&active, at.Add(time.Minute), "⏳ This preview will be removed at 2026-01-04 12:00 UTC after 3 d without activity" + tail},
		"no activity known": {nil, at.Add(-5 * time.Hour), "⏳ This preview will be removed at 2026-01-04 12:00 UTC (in 5 h)" + tail},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			n := env.Notice{Env: env.Environment{LastActivityAt: tt.active}, Warning: &at}
			if got := warning(n, tt.now); got != tt.want {
				t.Errorf("warning = %q\nwant      %q", got, tt.want)
			}
		})
	}
	if got := idleFor(env.Notice{Expired: true}); got != "its time" {
		t.Errorf("idleFor without times = %q", got)
	}
	removed := at.Add(time.Minute)
	if got := idleFor(env.Notice{Env: env.Environment{LastActivityAt: &active, DeletedAt: &removed}}); got != "3 d" {
		t.Errorf("idleFor by removal time = %q", got)
	}
}
