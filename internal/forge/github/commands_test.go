package github

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
	"github.com/previewd/previewd/internal/githubapi"
	"github.com/previewd/previewd/internal/store"
)

// replier reacts through the fake GitHub and keeps the lines said.
type replier struct {
	c     *githubapi.Client
	mu    sync.Mutex
	lines []string
}

func (r *replier) React(ctx context.Context, id int64, content string) error {
	_, _, err := r.c.API().Reactions.CreateIssueCommentReaction(ctx, r.c.Owner(), r.c.Repo(), id, content)
	return err
}

func (r *replier) Say(_ context.Context, key string, _ int, line string) error {
	r.mu.Lock()
	r.lines = append(r.lines, key+" "+line)
	r.mu.Unlock()
	return nil
}

func (r *replier) said() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

type cmdRig struct {
	t         *testing.T
	fake      *ghtest.Server
	src       *Source
	st        *store.Store
	reply     *replier
	redeploys *recorder
	resets    *recorder
	tiers     *recorder
	enqueued  *recorder
	srv       *httptest.Server
	cmds      *Commands
	life      *lifecycle
	now       time.Time
}

// lifecycle stands in for the reconciler's lifecycle entry points: it
// records what each asked for, as the reconciler does, or fails with
// fail.
type lifecycle struct {
	mu     sync.Mutex
	now    time.Time
	asleep map[string]string // key -> who put it to sleep
	woken  []string
	until  map[string]time.Time
	kept   map[string]bool
	fail   error
}

func newLifecycle(now time.Time) *lifecycle {
	return &lifecycle{now: now, asleep: map[string]string{}, until: map[string]time.Time{}, kept: map[string]bool{}}
}

func (l *lifecycle) Sleep(_ context.Context, key, actor string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.asleep[key] = actor
	return nil
}

func (l *lifecycle) Wake(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.asleep, key)
	l.woken = append(l.woken, key)
}

func (l *lifecycle) Extend(_ context.Context, key string, d time.Duration) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return time.Time{}, l.fail
	}
	if l.kept[key] {
		return time.Time{}, nil
	}
	l.until[key] = l.now.Add(d)
	return l.until[key], nil
}

func (l *lifecycle) Keep(_ context.Context, key string, on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.kept[key] = on
	return nil
}

func newCmdRig(t *testing.T) *cmdRig {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.SetBranch("main", sha(1))
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "previewd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := newClient(t, fake)
	src := NewSource(c, SourceOptions{CloneURL: "https://example.invalid/x.git", ProductionBranch: "main", Filter: Filter{ForkLabel: "preview"}, KeepLabel: "preview:keep"})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := &cmdRig{t: t, fake: fake, src: src, st: st, reply: &replier{c: c}, redeploys: &recorder{}, resets: &recorder{}, tiers: &recorder{}, enqueued: &recorder{}, life: newLifecycle(now), now: now}
	cmds := NewCommands(CommandOptions{
		Client: c, Source: src, Ledger: st, Reply: g.reply, Self: "previewd-bot",
		Redeploy: g.redeploys.enqueue, Enqueue: g.enqueued.enqueue, ResetDB: g.resets.enqueue,
		DBTier: func(_ context.Context, key, tier string) (env.TierChoice, error) {
			g.tiers.enqueue(key + ":" + tier)
			switch tier {
			case "clone":
				return env.TierChoice{Tier: "clone", Made: "schema"}, nil
			case "schema":
				return env.TierChoice{Tier: "schema", Made: "schema"}, nil
			case "empty":
				return env.TierChoice{Tier: "empty", Made: "schema", Label: "clone"}, nil
			}
			return env.TierChoice{}, &env.TierError{Why: "unknown database tier " + strconv.Quote(tier)}
		},
		Down: func(ctx context.Context, key, actor string) error { return st.SetDown(ctx, key, actor) }, Up: st.ClearDown,
		Sleep: g.life.Sleep, Wake: g.life.Wake, Extend: g.life.Extend, Keep: g.life.Keep,
		Now: func() time.Time { return g.now },
	})
	g.cmds = cmds
	g.srv = httptest.NewServer(NewWebhook(WebhookOptions{Secret: secret, Owner: "octocat", Repo: "Hello-World", ProductionBranch: "main", Enqueue: g.enqueued.enqueue, Source: src, Commands: cmds}))
	t.Cleanup(g.srv.Close)
	return g
}

// comment posts body as user on pull request n and delivers the webhook;
// it returns the comment's id and the webhook's answer.
func (g *cmdRig) comment(n int, user, body string) (int64, string) {
	g.t.Helper()
	id := g.fake.AddComment(n, user, body)
	code, resp, err := ghtest.Deliver(g.srv.Client(), g.srv.URL, secret, "issue_comment", g.fake.IssueCommentEvent(n, id))
	if err != nil || code != 202 {
		g.t.Fatalf("delivery: %d %s %v", code, resp, err)
	}
	return id, resp
}

func (g *cmdRig) audit() []store.AuditEntry {
	g.t.Helper()
	a, err := g.st.Audit(g.t.Context(), 100, 0)
	if err != nil {
		g.t.Fatal(err)
	}
	return a
}

func (g *cmdRig) deployed(t *testing.T) []string {
	t.Helper()
	srcs, err := g.src.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return keys(srcs)
}

func TestCommandFixture(t *testing.T) {
	// The fixture is GitHub's own example: a comment on an issue, not a
	// pull request, so it is no command.
	g := newCmdRig(t)
	code, resp, err := ghtest.Deliver(g.srv.Client(), g.srv.URL, secret, "issue_comment", ghtest.Forged(ghtest.Fixture("webhooks/issue_comment.created.json"), "octocat/Hello-World"))
	if err != nil || code != 202 || !strings.Contains(resp, "not a pull request") {
		t.Fatalf("fixture delivery: %d %s %v", code, resp, err)
	}
}

func TestCommandRedeployByWriter(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.SetPermission("alice", "write")
	if err := g.st.Upsert(t.Context(), env.Source{Key: "pr-2", Kind: env.KindPullRequest, Number: 2, SHA: sha(2)}); err != nil {
		t.Fatal(err)
	}
	id, resp := g.comment(2, "alice", "/preview redeploy")
	if !strings.Contains(resp, "accepted") {
		t.Fatalf("answer %s", resp)
	}
	if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "+1"}) {
		t.Errorf("reactions %v, want eyes then +1", got)
	}
	if got := g.redeploys.got(); !slices.Equal(got, []string{"pr-2"}) {
		t.Errorf("redeploys %v", got)
	}
	if got := g.reply.said(); !slices.Equal(got, []string{"pr-2 @alice: redeploy accepted"}) {
		t.Errorf("said %q", got)
	}
	a := g.audit()
	if len(a) != 1 || a[0].Actor != "github:alice" || a[0].Action != "redeploy" || a[0].Via != "pr-comment" || a[0].Key != "pr-2" {
		t.Errorf("audit %+v", a)
	}
	// A second command within the TTL asks GitHub nothing more.
	g.now = g.now.Add(30 * time.Second)
	g.comment(2, "alice", "/preview redeploy")
	if n := g.fake.Count("GET /repos/{owner}/{repo}/collaborators/{user}/permission"); n != 1 {
		t.Errorf("permission asked %d times within the TTL, want 1", n)
	}
	g.now = g.now.Add(time.Minute)
	g.comment(2, "alice", "/preview redeploy")
	if n := g.fake.Count("GET /repos/{owner}/{repo}/collaborators/{user}/permission"); n != 2 {
		t.Errorf("permission asked %d times after the TTL, want 2", n)
	}
}

func TestCommandRefusedForReader(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	for _, user := range []string{"bob", "carol"} {
		if user == "carol" {
			g.fake.SetPermission("carol", "triage")
		}
		id, resp := g.comment(2, user, "/preview redeploy")
		if !strings.Contains(resp, "refused") {
			t.Fatalf("answer %s", resp)
		}
		if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "-1"}) {
			t.Errorf("%s: reactions %v, want eyes then -1", user, got)
		}
	}
	if got := g.redeploys.got(); len(got) != 0 {
		t.Errorf("redeploys %v, want none", got)
	}
	if got := g.reply.said(); !slices.Equal(got, []string{"pr-2 @bob: refused, needs write access", "pr-2 @carol: refused, needs write access"}) {
		t.Errorf("said %q", got)
	}
	a := g.audit()
	if len(a) != 2 || a[1].Actor != "github:bob" || !strings.HasPrefix(a[1].Detail, "refused") {
		t.Errorf("audit %+v", a)
	}
}

func TestCommandIgnored(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.SetPermission("alice", "admin")
	for _, c := range []struct{ user, body, why string }{
		{"previewd[bot]", "/preview redeploy", "bot"},
		{"dependabot[bot]", "/preview redeploy", "bot"},
		{"previewd-bot", "/preview redeploy", "own"},
		{"alice", "<!-- previewd:pr-2 -->\n/preview redeploy", "own"},
		{"alice", "looks good\n/preview redeploy", "no command"},
		{"alice", "```\n/preview redeploy\n```", "no command"},
	} {
		id, resp := g.comment(2, c.user, c.body)
		if !strings.Contains(resp, "ignored") || !strings.Contains(resp, c.why) {
			t.Errorf("%s %q: answer %s", c.user, c.body, resp)
		}
		if r := g.fake.Reactions(id); len(r) != 0 {
			t.Errorf("%s: reactions %v on an ignored comment", c.user, r)
		}
	}
	if n := g.fake.Count("GET /repos/{owner}/{repo}/collaborators/{user}/permission"); n != 0 {
		t.Errorf("permission asked %d times for ignored comments", n)
	}
	if len(g.audit()) != 0 || len(g.redeploys.got()) != 0 {
		t.Error("an ignored comment was acted on")
	}
}

func TestCommandHelpAndUnavailable(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.SetPermission("alice", "maintain")
	id, _ := g.comment(2, "alice", "/preview dance")
	if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "-1"}) {
		t.Errorf("unknown: reactions %v", got)
	}
	g.comment(2, "alice", "/preview help")
	said := g.reply.said()
	if len(said) != 2 || !strings.Contains(said[0], "unknown command `dance`") || !strings.Contains(said[0], "/preview redeploy") ||
		!strings.Contains(said[1], "/preview approve") || !strings.Contains(said[1], "/preview reset-db") {
		t.Errorf("said %q", said)
	}
}

// TestCommandDBTier: /preview db <tier> asks the reconciler for the tier
// and answers what it gives: re-created, already there, or kept by a
// label; a refusal says why; no tier gets the usage, and a pull request
// without an environment is refused before the reconciler is asked.
func TestCommandDBTier(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.OpenPR(ghtest.PR{Number: 3, HeadSHA: sha(3)})
	g.fake.SetPermission("alice", "write")
	if err := g.st.Upsert(context.Background(), env.Source{Key: "pr-2", Kind: env.KindPullRequest, Number: 2, Branch: "x", SHA: sha(2)}); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"/preview db Clone", "/preview db schema", "/preview db empty", "/preview db gold", "/preview db", "/preview db clone extra"} {
		g.comment(2, "alice", body)
	}
	g.comment(3, "alice", "/preview db clone")
	want := []string{
		"pr-2 @alice: db accepted: the database is re-created at tier `clone` (it was `schema`), migrated and seeded; its data starts afresh",
		"pr-2 @alice: db accepted: the database is already at tier `schema`",
		"pr-2 @alice: db accepted, but the label `preview:db=clone` still chooses tier `clone`: remove the label for `empty`",
		`pr-2 @alice: db refused: unknown database tier "gold"`,
	}
	said := g.reply.said()
	if len(said) != 7 || !slices.Equal(said[:4], want) || !strings.Contains(said[4], "usage: `/preview db <tier>`") || !strings.Contains(said[5], "usage:") ||
		said[6] != "pr-3 @alice: db refused: this pull request has no environment" {
		t.Errorf("said %q", said)
	}
	if got := g.tiers.got(); !slices.Equal(got, []string{"pr-2:clone", "pr-2:schema", "pr-2:empty", "pr-2:gold"}) {
		t.Errorf("asked %v", got)
	}
}

// TestCommandResetDB: /preview reset-db asks the reconciler for a fresh
// database of a preview that exists, and refuses one that does not.
func TestCommandResetDB(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.OpenPR(ghtest.PR{Number: 3, HeadSHA: sha(3)})
	g.fake.SetPermission("alice", "write")
	if err := g.st.Upsert(context.Background(), env.Source{Key: "pr-2", Kind: env.KindPullRequest, Number: 2, Branch: "x", SHA: sha(2)}); err != nil {
		t.Fatal(err)
	}
	g.comment(2, "alice", "/preview reset-db")
	g.comment(3, "alice", "/preview reset-db")
	said := g.reply.said()
	if len(said) != 2 || !strings.Contains(said[0], "reset-db accepted") || !strings.Contains(said[1], "reset-db refused: this pull request has no environment") {
		t.Errorf("said %q", said)
	}
	if got := g.resets.got(); !slices.Equal(got, []string{"pr-2"}) {
		t.Errorf("reset %v; want pr-2", got)
	}
}

func TestCommandOnClosedOrMissing(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.OpenPR(ghtest.PR{Number: 3, HeadSHA: sha(3)})
	g.fake.ClosePR(2, false)
	g.fake.SetPermission("alice", "write")
	id, _ := g.comment(2, "alice", "/preview redeploy")
	g.comment(3, "alice", "/preview redeploy")
	if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "-1"}) {
		t.Errorf("closed: reactions %v", got)
	}
	if got := g.reply.said(); !slices.Equal(got, []string{
		"pr-2 @alice: redeploy refused: the pull request is closed",
		"pr-3 @alice: redeploy refused: this pull request has no environment",
	}) {
		t.Errorf("said %q", got)
	}
	if len(g.redeploys.got()) != 0 {
		t.Error("redeploy requested")
	}
	if len(g.audit()) != 2 {
		t.Errorf("audit %+v", g.audit())
	}
}

func TestCommandApproveAndRevoke(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 5, HeadSHA: sha(5), HeadRepo: "mallory/Hello-World"})
	g.fake.SetPermission("alice", "write")
	if got := g.deployed(t); slices.Contains(got, "pr-5") {
		t.Fatalf("fork without label deployed: %v", got)
	}
	// mallory cannot approve herself.
	g.comment(5, "mallory", "/preview approve")
	if got := g.deployed(t); slices.Contains(got, "pr-5") {
		t.Fatal("a reader's approve deployed the fork")
	}
	id, _ := g.comment(5, "alice", "/preview approve")
	if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "+1"}) {
		t.Errorf("approve: reactions %v", got)
	}
	if got := g.enqueued.got(); !slices.Contains(got, "pr-5") {
		t.Errorf("enqueued %v, want pr-5", got)
	}
	trusted, err := g.st.Trusted(t.Context())
	if err != nil || len(trusted) != 1 || trusted[0].Login != "mallory" || trusted[0].By != "github:alice" {
		t.Fatalf("trusted %+v %v", trusted, err)
	}
	srcs, err := g.src.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var pr5 *env.Source
	for i := range srcs {
		if srcs[i].Key == "pr-5" {
			pr5 = &srcs[i]
		}
	}
	if pr5 == nil || !pr5.Fork || pr5.Trusted {
		t.Fatalf("approved fork: %+v; want deployed, a fork, not trusted with secrets", pr5)
	}
	// A later pull request of theirs deploys without the label, also
	// after a restart (a new Source loaded from the store).
	g.fake.OpenPR(ghtest.PR{Number: 6, HeadSHA: sha(6), HeadRepo: "mallory/Hello-World"})
	if got := g.deployed(t); !slices.Contains(got, "pr-6") {
		t.Errorf("a trusted contributor's later PR is not deployed: %v", got)
	}
	fresh := NewSource(newClient(t, g.fake), SourceOptions{ProductionBranch: "main", Filter: Filter{ForkLabel: "preview"}})
	fresh.SetTrusted([]string{trusted[0].Login})
	if srcs, err := fresh.List(t.Context()); err != nil || !slices.Contains(keys(srcs), "pr-6") {
		t.Errorf("after a restart: %v %v", keys(srcs), err)
	}
	// Approve on a branch of this repository needs none.
	g.fake.OpenPR(ghtest.PR{Number: 7, HeadSHA: sha(7)})
	g.comment(7, "alice", "/preview approve")
	g.comment(5, "alice", "/preview revoke @Mallory")
	if got := g.deployed(t); slices.Contains(got, "pr-5") || slices.Contains(got, "pr-6") {
		t.Errorf("revoked contributor still deployed: %v", got)
	}
	if trusted, _ := g.st.Trusted(t.Context()); len(trusted) != 0 {
		t.Errorf("trusted after revoke %+v", trusted)
	}
	said := g.reply.said()
	want := []string{
		"pr-5 @mallory: refused, needs write access",
		"pr-5 @alice: approve accepted: @mallory is a trusted contributor (no configured secrets)",
		"pr-7 @alice: approve refused: not a fork, it needs no approval",
		"pr-5 @alice: @Mallory is no longer a trusted contributor",
	}
	if !slices.Equal(said, want) {
		t.Errorf("said %q\nwant %q", said, want)
	}
	var actions []string
	for _, e := range g.audit() {
		actions = append(actions, e.Actor+" "+e.Action)
	}
	if !slices.Equal(actions, []string{"github:alice revoke", "github:alice approve", "github:alice approve", "github:mallory approve"}) {
		t.Errorf("audit %v", actions)
	}
}

func TestCommandsOffOrEdited(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	id := fake.AddComment(2, "alice", "/preview redeploy")
	rec := &recorder{}
	srv := httptest.NewServer(NewWebhook(WebhookOptions{Secret: secret, Owner: "octocat", Repo: "Hello-World", ProductionBranch: "main", Enqueue: rec.enqueue}))
	t.Cleanup(srv.Close)
	code, resp, err := ghtest.Deliver(srv.Client(), srv.URL, secret, "issue_comment", fake.IssueCommentEvent(2, id))
	if err != nil || code != 202 || !strings.Contains(resp, "commands are off") || len(rec.got()) != 0 {
		t.Fatalf("without commands: %d %s %v %v", code, resp, err, rec.got())
	}
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	id = g.fake.AddComment(2, "alice", "/preview redeploy")
	edited := strings.Replace(string(g.fake.IssueCommentEvent(2, id)), `"action": "created"`, `"action": "edited"`, 1)
	code, resp, err = ghtest.Deliver(g.srv.Client(), g.srv.URL, secret, "issue_comment", []byte(edited))
	if err != nil || code != 202 || !strings.Contains(resp, "action edited") || len(g.fake.Reactions(id)) != 0 {
		t.Fatalf("edited: %d %s %v", code, resp, err)
	}
}

func TestCommandDownUp(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.OpenPR(ghtest.PR{Number: 3, HeadSHA: sha(3)})
	g.fake.SetPermission("alice", "write")
	if err := g.st.Upsert(t.Context(), env.Source{Key: "pr-2", Kind: env.KindPullRequest, Number: 2, SHA: sha(2)}); err != nil {
		t.Fatal(err)
	}
	// A reader may not put it down.
	g.comment(2, "bob", "/preview down")
	if down, _ := g.st.IsDown(t.Context(), "pr-2"); down {
		t.Fatal("a reader put the environment down")
	}
	id, _ := g.comment(2, "alice", "/preview down")
	if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "+1"}) {
		t.Errorf("down: reactions %v", got)
	}
	if down, err := g.st.IsDown(t.Context(), "pr-2"); err != nil || !down {
		t.Fatalf("after /preview down: %v %v", down, err)
	}
	g.comment(3, "alice", "/preview down") // no environment
	g.comment(2, "alice", "/preview up")
	if down, err := g.st.IsDown(t.Context(), "pr-2"); err != nil || down {
		t.Fatalf("after /preview up: %v %v", down, err)
	}
	g.fake.ClosePR(2, false)
	g.comment(2, "alice", "/preview down")
	if down, _ := g.st.IsDown(t.Context(), "pr-2"); down {
		t.Fatal("a closed pull request was put down")
	}
	want := []string{
		"pr-2 @bob: refused, needs write access",
		"pr-2 @alice: down accepted: the environment is removed until `/preview up`",
		"pr-3 @alice: down refused: this pull request has no environment",
		"pr-2 @alice: up accepted: deploying again",
		"pr-2 @alice: down refused: the pull request is closed",
	}
	if got := g.reply.said(); !slices.Equal(got, want) {
		t.Errorf("said %q\nwant %q", got, want)
	}
	var actions []string
	for _, e := range g.audit() {
		actions = append(actions, e.Actor+" "+e.Action+" "+e.Key)
	}
	if !slices.Equal(actions, []string{"github:alice down pr-2", "github:alice up pr-2", "github:alice down pr-3", "github:alice down pr-2", "github:bob down pr-2"}) {
		t.Errorf("audit %v", actions)
	}
}

// TestRevokeFromAPI: Commands.Revoke, which the API and dashboard call,
// has the effect of /preview revoke: no longer trusted, their fork pull
// requests re-read and reconciled, so no longer deployed.
func TestRevokeFromAPI(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 5, HeadSHA: sha(5), HeadRepo: "mallory/Hello-World", Author: "mallory"})
	g.fake.SetPermission("alice", "write")
	g.comment(5, "alice", "/preview approve")
	if got := g.deployed(t); !slices.Contains(got, "pr-5") {
		t.Fatalf("approved fork not deployed: %v", got)
	}
	before := len(g.enqueued.got())
	was, err := g.cmds.Revoke(t.Context(), "Mallory")
	if err != nil || !was {
		t.Fatalf("Revoke = %v, %v; want true", was, err)
	}
	if got := g.deployed(t); slices.Contains(got, "pr-5") {
		t.Errorf("revoked contributor still deployed: %v", got)
	}
	if trusted, _ := g.st.Trusted(t.Context()); len(trusted) != 0 {
		t.Errorf("trusted after revoke %+v", trusted)
	}
	if got := g.enqueued.got()[before:]; !slices.Equal(got, []string{"pr-5"}) {
		t.Errorf("enqueued after revoke %v, want pr-5", got)
	}
	if was, err := g.cmds.Revoke(t.Context(), "mallory"); err != nil || was {
		t.Errorf("second Revoke = %v, %v; want false", was, err)
	}
}
