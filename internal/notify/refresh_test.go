package notify

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
	"github.com/previewd/previewd/internal/githubapi"
)

// clock is a clock the test moves; its timers fire when it passes them.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*clockTimer
}

type clockTimer struct {
	at time.Time
	f  func()
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &clockTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := len(c.timers)
		c.timers = slices.DeleteFunc(c.timers, func(o *clockTimer) bool { return o == t })
		return len(c.timers) < n
	}
}

// advance moves the clock by d and runs, in order, the timers it passes.
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*clockTimer
	c.timers = slices.DeleteFunc(c.timers, func(t *clockTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		due = append(due, t)
		return true
	})
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

func (c *clock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// TestRefreshWhileBuilding: while a preview stays building (then
// migrating) its comment shows the step's elapsed time, edited again at
// most every 30 s of the clock after the last edit; a status change is
// edited at once and restarts the wait; once ready nothing more is
// edited. Deployments and commit statuses are not sent again.
func TestRefreshWhileBuilding(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 7, HeadSHA: sha(7)})
	clk := &clock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	c, err := githubapi.New(githubapi.Options{APIURL: fake.APIURL(), Owner: fake.Owner, Repo: fake.Repo, Token: "t", Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGitHub(GitHubOptions{Client: c, Deployments: true, CommitStatus: true, Backoff: 10 * time.Millisecond, Now: clk.Now, AfterFunc: clk.AfterFunc})
	run(t, g)
	t0 := clk.Now()
	const edit = "PATCH /repos/{owner}/{repo}/issues/comments/{cid}"
	others := func() int {
		return fake.Count("POST /repos/{owner}/{repo}/deployments/{did}/statuses") + fake.Count("POST /repos/{owner}/{repo}/statuses/{sha}") +
			fake.Count("POST /repos/{owner}/{repo}/deployments")
	}
	body := func() string {
		for _, c := range fake.Comments(7) {
			if strings.HasPrefix(c.Body, Marker("pr-7")) {
				return c.Body
			}
		}
		return ""
	}
	step := func(name string, advance time.Duration, edits int, line string) {
		t.Helper()
		clk.advance(advance)
		g.Wait()
		if n := fake.Count(edit); n != edits {
			t.Errorf("%s (at %v): %d edits, want %d", name, clk.Now().Sub(t0), n, edits)
		}
		if b := body(); !strings.Contains(b, line) {
			t.Errorf("%s: comment does not say %q:\n%s", name, line, b)
		}
	}
	at := func(status env.Status, since time.Duration) env.Notice {
		return notice("pr-7", status, func(n *env.Notice) { n.Env.UpdatedAt = t0.Add(since) })
	}

	g.Notify(context.Background(), at(env.StatusBuilding, 0))
	step("building begins", 0, 0, "Rolling out `3f2a9c1`: building.")
	sent := others()
	if len(fake.Comments(7)) != 1 || clk.pending() != 1 {
		t.Fatalf("%d comments, %d timers", len(fake.Comments(7)), clk.pending())
	}
	step("29 s in", 29*time.Second, 0, "building.")
	step("30 s in", time.Second, 1, "building 30 s.")
	step("59 s in", 29*time.Second, 1, "building 30 s.")
	step("1 m in", time.Second, 2, "building 1 m.")
	step("1 m 10 s in", 10*time.Second, 2, "building 1 m.")
	if n := others(); n != sent {
		t.Errorf("the refreshes sent %d deployment or commit status requests", n-sent)
	}
	// The status changes at 70 s: edited at once, and the next refresh is
	// 30 s after that edit, not at 90 s.
	g.Notify(context.Background(), at(env.StatusMigrating, 70*time.Second))
	step("migrating", 0, 3, "Rolling out `3f2a9c1`: migrating.")
	step("90 s in", 20*time.Second, 3, "migrating.")
	step("100 s in", 10*time.Second, 4, "migrating 30 s.")
	g.Notify(context.Background(), at(env.StatusReady, 105*time.Second))
	step("ready", 5*time.Second, 5, "Preview ready")
	sent = others()
	step("long after", 10*time.Minute, 5, "Preview ready")
	if clk.pending() != 0 || others() != sent {
		t.Errorf("after ready: %d timers left, %d more requests", clk.pending(), others()-sent)
	}
}

// TestRefreshOnlyPullRequests: production has no comment, so nothing
// is refreshed.
func TestRefreshOnlyPullRequests(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	clk := &clock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	c, err := githubapi.New(githubapi.Options{APIURL: fake.APIURL(), Owner: fake.Owner, Repo: fake.Repo, Token: "t", Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGitHub(GitHubOptions{Client: c, Deployments: true, Backoff: 10 * time.Millisecond, Now: clk.Now, AfterFunc: clk.AfterFunc})
	run(t, g)
	n := notice("production", env.StatusBuilding, func(n *env.Notice) { n.Env.Kind, n.Env.Number, n.Source.Number = env.KindProduction, 0, 0 })
	g.Notify(context.Background(), n)
	g.Wait()
	if clk.pending() != 0 {
		t.Errorf("production (no comment) has %d refresh timers", clk.pending())
	}
}

func TestElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "0 s",
		40 * time.Second:                      "40 s",
		80*time.Second + 900*time.Millisecond: "1 m 20 s",
		2 * time.Minute:                       "2 m",
		59*time.Minute + 59*time.Second:       "59 m 59 s",
		65 * time.Minute:                      "1 h 5 m",
	} {
		if got := elapsed(d); got != want {
			t.Errorf("elapsed(%v) = %q, want %q", d, got, want)
		}
	}
}
