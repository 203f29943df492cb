package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v88/github"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/githubapi"
)

// GitHubOptions configure a GitHub notifier.
type GitHubOptions struct {
	// Client is the repository's API client.
	Client *githubapi.Client
	// Deployments creates a deployment per deployed SHA.
	Deployments bool
	// CommitStatus sets the "previewd" commit status.
	CommitStatus bool
	// DashboardURL, if set, is previewd's dashboard: comments link to the
	// environment's page and deployments use it as their log URL.
	DashboardURL string
	// Backoff is the first retry's delay; it doubles up to a minute.
	// Default 500ms.
	Backoff time.Duration
	Logger  *slog.Logger
	// Now is the clock (how long a step has run, how soon a TTL warning
	// comes due). Default time.Now.
	Now func() time.Time
	// Refresh is how often the comment of a preview that stays building,
	// migrating or starting is rendered again, so the step's elapsed
	// time moves on: at most one edit per Refresh after the last one,
	// and none once the status changes. Default DefaultRefresh;
	// negative: never.
	Refresh time.Duration
	// AfterFunc runs f once d has passed, unless stop is called first
	// (the refresh's timer; tests move their own clock). Default
	// time.AfterFunc.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// DefaultRefresh is GitHubOptions.Refresh's default.
const DefaultRefresh = 30 * time.Second

// GitHub tells a pull request about its environment: one sticky comment,
// a deployment per deployed SHA, and optionally a commit status.
//
// Notify only records the notice and returns, so the reconciler never
// waits for GitHub. While Run runs, one goroutine per key sends the latest
// notice, in order, retrying with backoff until it is sent or a newer one
// replaces it. Everything it does is idempotent and found again after a
// restart: the comment by its hidden marker, a deployment by (SHA,
// environment). What it remembers of an environment only saves requests,
// and is forgotten once the environment's removal has been told.
type GitHub struct {
	o     GitHubOptions
	api   *gh.Client
	owner string
	repo  string
	log   *slog.Logger
	wg    sync.WaitGroup

	mu      sync.Mutex
	ctx     context.Context // Run's; nil before Run
	stopped bool            // Run's context has ended
	pending map[string]*env.Notice
	running map[string]bool
	shown   map[string]*shown // by key
	// refreshes are the timers of the comments to render again, by key.
	refreshes map[string]*refresh
}

// refresh is one timer to render a comment again.
type refresh struct{ stop func() bool }

// shown is what GitHub is known to show for one environment.
type shown struct {
	comment *comment
	// deploy is the deployment of the SHA deployed last.
	deploy struct {
		sha string
		id  int64
	}
	// states are the last states known of the environment's deployments
	// that GitHub still lists, so old ones are not read again.
	states map[int64]string
	// commit is the SHA, state and description of the last commit status
	// set; migrations the same of the MigrationsContext status.
	commit, migrations string
	// lines are the last answers to PR commands, oldest first, shown at
	// the end of the comment.
	lines []string
	// write serializes the comment's edits by notices and by Say.
	write *sync.Mutex
}

type comment struct {
	id   int64
	body string
}

// Pages read at most when looking for the comment (10,000 comments) and
// for the deployments of an environment (1,000 deployments).
const (
	maxCommentPages    = 100
	maxDeploymentPages = 10
)

// NewGitHub returns a notifier; it sends nothing until Run.
func NewGitHub(o GitHubOptions) *GitHub {
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh == 0 {
		o.Refresh = DefaultRefresh
	}
	if o.AfterFunc == nil {
		o.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	return &GitHub{
		o: o, api: o.Client.API(), owner: o.Client.Owner(), repo: o.Client.Repo(), log: o.Logger,
		pending: map[string]*env.Notice{}, running: map[string]bool{}, shown: map[string]*shown{},
		refreshes: map[string]*refresh{},
	}
}

// Run sends notices until ctx ends, then waits for the sends under way to
// stop. Notices queued before Run are sent once it starts; after it ends,
// Notify refuses them. Call it once.
func (g *GitHub) Run(ctx context.Context) {
	g.mu.Lock()
	if g.ctx != nil {
		g.mu.Unlock()
		g.log.Error("notifier run twice")
		return
	}
	g.ctx = ctx
	for key := range g.pending {
		g.start(key)
	}
	g.mu.Unlock()
	<-ctx.Done()
	// No goroutine starts after this: every wg.Add happened under g.mu
	// before it.
	g.mu.Lock()
	g.stopped = true
	for key := range g.refreshes {
		g.cancelRefresh(key)
	}
	g.mu.Unlock()
	g.wg.Wait()
	g.mu.Lock()
	clear(g.pending)
	g.mu.Unlock()
}

// start starts key's goroutine unless it runs. Call with g.mu held, after
// Run began.
func (g *GitHub) start(key string) {
	if g.running[key] {
		return
	}
	g.running[key] = true
	g.wg.Add(1)
	go g.drain(g.ctx, key)
}

// Notify queues n to be sent; it never blocks on GitHub. The notice
// outlives ctx: it is sent under Run's context.
func (g *GitHub) Notify(_ context.Context, n env.Notice) error {
	key := n.Env.Key
	if key == "" {
		key = n.Source.Key
	}
	if key == "" || (n.Env.Kind != env.KindPullRequest && n.Env.Kind != env.KindProduction && key != env.ProductionKey) {
		return nil // only pull requests and production are told about
	}
	n.Env.Key = key
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return errors.New("github notifier stopped")
	}
	g.pending[key] = &n
	// What the newer notice says replaces any refresh of the older.
	g.cancelRefresh(key)
	if g.ctx != nil {
		g.start(key)
	}
	return nil
}

// scheduleRefresh renders n's comment again after Refresh, if n is a
// step that goes on (building, migrating, starting) of a pull request.
// Call with g.mu held, once n has been delivered and nothing newer waits.
func (g *GitHub) scheduleRefresh(key string, n env.Notice) {
	g.cancelRefresh(key)
	switch PhaseOf(n) {
	case PhaseBuilding, PhaseMigrating, PhaseStarting:
	default:
		return
	}
	if g.o.Refresh < 0 || g.stopped || n.Env.Kind != env.KindPullRequest || max(n.Env.Number, n.Source.Number) <= 0 {
		return
	}
	r := &refresh{}
	g.refreshes[key] = r
	// The timer's f waits for g.mu, held here until r.stop is set.
	r.stop = g.o.AfterFunc(g.o.Refresh, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.stopped || g.refreshes[key] != r {
			return // stopped, or replaced by a newer notice
		}
		delete(g.refreshes, key)
		if g.pending[key] == nil {
			g.pending[key] = &n
			g.start(key)
		}
	})
}

// cancelRefresh stops key's refresh, if any. Call with g.mu held.
func (g *GitHub) cancelRefresh(key string) {
	if r := g.refreshes[key]; r != nil {
		r.stop()
		delete(g.refreshes, key)
	}
}

// Wait blocks until every notice queued while Run runs has been sent or
// dropped (Run's context ended, or GitHub refused it for good).
func (g *GitHub) Wait() { g.wg.Wait() }

func (g *GitHub) drain(ctx context.Context, key string) {
	defer g.wg.Done()
	for {
		g.mu.Lock()
		n := g.pending[key]
		delete(g.pending, key)
		if n == nil || ctx.Err() != nil {
			delete(g.running, key)
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.deliver(ctx, key, *n)
		g.mu.Lock()
		if g.pending[key] == nil && ctx.Err() == nil {
			g.scheduleRefresh(key, *n)
		}
		g.mu.Unlock()
		if PhaseOf(*n) == PhaseRemoved && ctx.Err() == nil {
			// Told: nothing of the environment is needed any more. (If
			// its pull request comes back, all is found again.)
			// A Say may be editing the comment right now: it keeps the
			// key's write lock (and nothing else), so its edit and the
			// next one are still one at a time.
			g.mu.Lock()
			if s := g.shown[key]; s != nil && !s.write.TryLock() {
				g.shown[key] = &shown{states: map[int64]string{}, write: s.write}
			} else {
				if s != nil {
					s.write.Unlock()
				}
				delete(g.shown, key)
			}
			g.mu.Unlock()
		}
	}
}

// deliver sends n, retrying with backoff until it is sent, refused for
// good, replaced by a newer notice, or ctx ends.
func (g *GitHub) deliver(ctx context.Context, key string, n env.Notice) {
	delay := g.o.Backoff
	for {
		err := g.send(ctx, n)
		if err == nil || ctx.Err() != nil {
			return
		}
		if permanent(err) {
			g.log.Warn("github refused a notice", "env", key, "err", err)
			return
		}
		g.mu.Lock()
		newer := g.pending[key] != nil
		g.mu.Unlock()
		if newer {
			return // the newer notice says more
		}
		g.log.Debug("retrying a notice", "env", key, "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, time.Minute)
	}
}

// permanent reports whether GitHub refused a request for good (a 4xx
// other than rate limits, timeouts and conflicts).
func permanent(err error) bool {
	var er *gh.ErrorResponse
	if !errors.As(err, &er) || er.Response == nil {
		return false
	}
	c := er.Response.StatusCode
	return c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusConflict && c != http.StatusTooManyRequests && c != http.StatusForbidden
}

// known runs f on what is known of key, with g.mu held.
func (g *GitHub) known(key string, f func(s *shown)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.shown[key]
	if s == nil {
		s = &shown{states: map[int64]string{}, write: &sync.Mutex{}}
		g.shown[key] = s
	}
	f(s)
}

// send makes GitHub show n. Each part is idempotent; a failed part fails
// the whole and it is all tried again.
func (g *GitHub) send(ctx context.Context, n env.Notice) error {
	var errs []error
	number := n.Env.Number
	if number == 0 {
		number = n.Source.Number
	}
	if n.Env.Kind == env.KindPullRequest && number > 0 {
		unlock := g.lockComment(n.Env.Key)
		err := g.syncComment(ctx, n.Env.Key, number, Render(n, g.o.DashboardURL, g.o.Now())+g.section(n.Env.Key))
		unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("comment: %w", err))
		}
	}
	if g.o.Deployments {
		if err := g.syncDeployment(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("deployment: %w", err))
		}
	}
	if g.o.CommitStatus {
		if err := g.syncMigrationsStatus(ctx, n); err != nil {
			return err
		}
		if err := g.syncCommitStatus(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("commit status: %w", err))
		}
	}
	return errors.Join(errs...)
}

// syncComment makes the pull request's previewd comment read body: it
// edits the comment it made before (found by its marker after a restart)
// or creates it.
func (g *GitHub) syncComment(ctx context.Context, key string, number int, body string) error {
	c, err := g.currentComment(ctx, key, number)
	if err != nil {
		return err
	}
	return g.writeComment(ctx, key, number, c, body)
}

// currentComment returns previewd's comment on the pull request: the one
// remembered, else the one found by its marker; nil when there is none.
func (g *GitHub) currentComment(ctx context.Context, key string, number int) (*comment, error) {
	var c *comment
	g.known(key, func(s *shown) { c = s.comment })
	if c != nil {
		return c, nil
	}
	c, err := g.findComment(ctx, key, number)
	if err != nil {
		return nil, fmt.Errorf("finding the comment: %w", err)
	}
	return c, nil
}

// writeComment makes c (nil: none yet) read body.
func (g *GitHub) writeComment(ctx context.Context, key string, number int, c *comment, body string) error {
	remember := func(c *comment) { g.known(key, func(s *shown) { s.comment = c }) }
	if c != nil {
		if c.body == body {
			remember(c)
			return nil
		}
		_, _, err := g.api.Issues.EditComment(ctx, g.owner, g.repo, c.id, &gh.IssueComment{Body: gh.Ptr(body)})
		switch {
		case githubapi.IsNotFound(err):
			// deleted by someone: make it again
		case err != nil:
			return fmt.Errorf("editing comment %d: %w", c.id, err)
		default:
			remember(&comment{id: c.id, body: body})
			return nil
		}
	}
	made, _, err := g.api.Issues.CreateComment(ctx, g.owner, g.repo, number, &gh.IssueComment{Body: gh.Ptr(body)})
	if err != nil {
		// If the comment was made but the answer lost, the next attempt
		// finds it by its marker.
		remember(nil)
		return fmt.Errorf("creating comment: %w", err)
	}
	remember(&comment{id: made.GetID(), body: body})
	return nil
}

// findComment looks through the pull request's comments, oldest first,
// for the one that starts with key's marker.
func (g *GitHub) findComment(ctx context.Context, key string, number int) (*comment, error) {
	marker := Marker(key)
	opts := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for range maxCommentPages {
		cs, resp, err := g.api.Issues.ListComments(ctx, g.owner, g.repo, number, opts)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if strings.HasPrefix(strings.TrimSpace(c.GetBody()), marker) {
				return &comment{id: c.GetID(), body: c.GetBody()}, nil
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return nil, nil
}

// environment is the deployment environment of a key.
func environment(n env.Notice) (name string, production bool) {
	if n.Env.Kind == env.KindProduction || n.Env.Key == env.ProductionKey {
		return "production", true
	}
	return "preview/" + n.Env.Key, false
}

func (g *GitHub) logURL(key string) string {
	if g.o.DashboardURL == "" {
		return ""
	}
	return strings.TrimSuffix(g.o.DashboardURL, "/") + "/environments/" + key
}

// syncDeployment keeps one deployment per (SHA, environment) and moves its
// status along: queued while it waits for a slot, in_progress while
// rolling out, then success or failure, inactive while it sleeps; on
// removal every deployment of the environment becomes inactive.
func (g *GitHub) syncDeployment(ctx context.Context, n env.Notice) error {
	key := n.Env.Key
	envName, production := environment(n)
	var state string
	switch PhaseOf(n) {
	case PhaseBuilding, PhaseMigrating, PhaseStarting:
		state = "in_progress"
	case PhaseReady:
		state = "success"
	case PhaseFailed:
		state = "failure"
	case PhaseQueued:
		state = "queued"
	case PhaseSleeping:
		// GitHub's word for a deployment that no longer serves; a
		// visit wakes it, and its success comes back on the same one.
		state = "inactive"
	case PhaseRemoved:
		return g.deactivate(ctx, key, envName, 0)
	default:
		return nil
	}
	sha := n.Env.SHA
	if sha == "" {
		sha = n.Source.SHA
	}
	if sha == "" {
		return nil
	}
	id, err := g.deployment(ctx, envName, production, sha, n)
	if err != nil {
		return err
	}
	var last string
	g.known(key, func(s *shown) { last = s.states[id] })
	if last != state {
		req := &gh.DeploymentStatusRequest{
			State:       gh.Ptr(state),
			Description: gh.Ptr(truncate(firstLine(n.Env.Message), 140)),
			// previewd marks older deployments inactive itself, for
			// transient and production environments too.
			AutoInactive: gh.Ptr(false),
		}
		if n.Env.URL != "" && state != "failure" {
			req.EnvironmentURL = gh.Ptr(n.Env.URL)
		}
		if u := g.logURL(key); u != "" {
			req.LogURL = gh.Ptr(u)
		}
		if _, _, err := g.api.Repositories.CreateDeploymentStatus(ctx, g.owner, g.repo, id, req); err != nil {
			return fmt.Errorf("setting deployment %d %s: %w", id, state, err)
		}
		g.known(key, func(s *shown) { s.states[id] = state })
	}
	if state == "success" {
		return g.deactivate(ctx, key, envName, id)
	}
	return nil
}

// deployment returns the deployment of sha to envName, creating it when
// GitHub has none.
func (g *GitHub) deployment(ctx context.Context, envName string, production bool, sha string, n env.Notice) (int64, error) {
	key := n.Env.Key
	var id int64
	g.known(key, func(s *shown) {
		if s.deploy.sha == sha {
			id = s.deploy.id
		}
	})
	if id != 0 {
		return id, nil
	}
	ds, _, err := g.api.Repositories.ListDeployments(ctx, g.owner, g.repo, &gh.DeploymentsListOptions{SHA: sha, Environment: envName, ListOptions: gh.ListOptions{PerPage: 100}})
	if err != nil {
		return 0, fmt.Errorf("listing deployments: %w", err)
	}
	for _, d := range ds {
		if d.GetSHA() == sha && d.GetEnvironment() == envName {
			id = d.GetID() // the newest: GitHub lists newest first
			break
		}
	}
	if id == 0 {
		desc := "previewd: " + key
		if n.Env.Kind == env.KindPullRequest && n.Env.Number > 0 {
			desc = fmt.Sprintf("previewd: pull request #%d", n.Env.Number)
		}
		d, _, err := g.api.Repositories.CreateDeployment(ctx, g.owner, g.repo, &gh.DeploymentRequest{
			Ref:                   gh.Ptr(sha),
			Task:                  gh.Ptr("deploy"),
			AutoMerge:             gh.Ptr(false),
			RequiredContexts:      &[]string{},
			Environment:           gh.Ptr(envName),
			Description:           gh.Ptr(desc),
			TransientEnvironment:  gh.Ptr(!production),
			ProductionEnvironment: gh.Ptr(production),
			Payload:               map[string]string{"previewd": key},
		})
		if err != nil {
			// A deployment made whose answer was lost is found by the
			// listing on the next attempt.
			return 0, fmt.Errorf("creating deployment: %w", err)
		}
		id = d.GetID()
	}
	g.known(key, func(s *shown) {
		s.deploy.sha, s.deploy.id = sha, id
	})
	return id, nil
}

// deactivate marks every deployment of envName except keep inactive,
// unless it already is, or failed. It forgets the states of deployments
// GitHub no longer lists, so they are bounded by what it lists.
func (g *GitHub) deactivate(ctx context.Context, key, envName string, keep int64) error {
	var ids []int64
	opts := &gh.DeploymentsListOptions{Environment: envName, ListOptions: gh.ListOptions{PerPage: 100}}
	for range maxDeploymentPages {
		ds, resp, err := g.api.Repositories.ListDeployments(ctx, g.owner, g.repo, opts)
		if err != nil {
			return fmt.Errorf("listing deployments: %w", err)
		}
		for _, d := range ds {
			if d.GetEnvironment() == envName {
				ids = append(ids, d.GetID())
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	listed := map[int64]bool{keep: true}
	for _, id := range ids {
		listed[id] = true
	}
	g.known(key, func(s *shown) {
		maps.DeleteFunc(s.states, func(id int64, _ string) bool { return !listed[id] })
	})
	for _, id := range ids {
		if id == keep {
			continue
		}
		var state string
		var ok bool
		g.known(key, func(s *shown) { state, ok = s.states[id] })
		if !ok {
			sts, _, err := g.api.Repositories.ListDeploymentStatuses(ctx, g.owner, g.repo, id, &gh.ListOptions{PerPage: 1})
			if err != nil {
				return fmt.Errorf("reading deployment %d: %w", id, err)
			}
			if len(sts) > 0 {
				state = sts[0].GetState()
			}
		}
		if state == "inactive" || state == "failure" || state == "error" {
			g.known(key, func(s *shown) { s.states[id] = state })
			continue
		}
		if _, _, err := g.api.Repositories.CreateDeploymentStatus(ctx, g.owner, g.repo, id, &gh.DeploymentStatusRequest{
			State: gh.Ptr("inactive"), Description: gh.Ptr("removed by previewd"), AutoInactive: gh.Ptr(false),
		}); err != nil {
			return fmt.Errorf("setting deployment %d inactive: %w", id, err)
		}
		g.known(key, func(s *shown) { s.states[id] = "inactive" })
	}
	return nil
}

// syncCommitStatus sets the "previewd" commit status of the SHA.
func (g *GitHub) syncCommitStatus(ctx context.Context, n env.Notice) error {
	var state string
	switch ph := PhaseOf(n); {
	case ph == PhaseWaiting, ph == PhaseBuilding, ph == PhaseMigrating, ph == PhaseStarting:
		state = "pending"
	case ph == PhaseQueued && n.Env.ReadyAt == nil:
		// A SHA not deployed yet waits; a woken preview queued again
		// keeps its SHA's success.
		state = "pending"
	case ph == PhaseReady:
		state = "success"
	case ph == PhaseFailed:
		state = "failure"
	default:
		return nil
	}
	sha := n.Env.SHA
	if sha == "" {
		sha = n.Source.SHA
	}
	if sha == "" {
		return nil
	}
	desc := truncate(firstLine(n.Env.Message), 140)
	set := sha + "\x00" + state + "\x00" + desc
	var same bool
	g.known(n.Env.Key, func(s *shown) { same = s.commit == set })
	if same {
		return nil
	}
	st := gh.RepoStatus{State: gh.Ptr(state), Context: gh.Ptr("previewd"), Description: gh.Ptr(desc)}
	if state == "success" && n.Env.URL != "" {
		st.TargetURL = gh.Ptr(n.Env.URL)
	} else if u := g.logURL(n.Env.Key); u != "" {
		st.TargetURL = gh.Ptr(u)
	}
	if _, _, err := g.api.Repositories.CreateStatus(ctx, g.owner, g.repo, sha, st); err != nil {
		return err
	}
	g.known(n.Env.Key, func(s *shown) { s.commit = set })
	return nil
}

// MigrationsContext is the commit status that says whether the migration
// rehearsal hit a database.rehearsal.failOn rule, so teams can require it
// before merging.
const MigrationsContext = "previewd/migrations"

// syncMigrationsStatus sets the MigrationsContext commit status of the
// SHA the rehearsal report is about: failure when it hits a failOn rule
// (a failed migration always does), success otherwise.
func (g *GitHub) syncMigrationsStatus(ctx context.Context, n env.Notice) error {
	r := n.Env.Rehearsal
	if r == nil || r.SHA == "" || r.Skipped != "" {
		return nil
	}
	state := "success"
	if len(r.Failing) > 0 {
		state = "failure"
	}
	desc := truncate(r.Summary(), 140)
	set := r.SHA + "\x00" + state + "\x00" + desc
	var same bool
	g.known(n.Env.Key, func(s *shown) { same = s.migrations == set })
	if same {
		return nil
	}
	st := gh.RepoStatus{State: gh.Ptr(state), Context: gh.Ptr(MigrationsContext), Description: gh.Ptr(desc)}
	if u := g.logURL(n.Env.Key); u != "" {
		st.TargetURL = gh.Ptr(u)
	}
	if _, _, err := g.api.Repositories.CreateStatus(ctx, g.owner, g.repo, r.SHA, st); err != nil {
		return err
	}
	g.known(n.Env.Key, func(s *shown) { s.migrations = set })
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n-1] + "…"
}
