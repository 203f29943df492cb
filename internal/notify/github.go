package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v88/github"

	"github.com/previewd/previewd/internal/env"
	ghforge "github.com/previewd/previewd/internal/forge/github"
)

// GitHubOptions configure a GitHub notifier.
type GitHubOptions struct {
	Client *ghforge.Client
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
}

// GitHub tells a pull request about its environment: one sticky comment,
// a deployment per deployed SHA, and optionally a commit status.
//
// Notify only records the notice and returns, so the reconciler never
// waits for GitHub. One goroutine per key sends the latest notice, in
// order, retrying with backoff until it is sent or a newer one replaces
// it. Everything it does is idempotent and found again after a restart:
// the comment by its hidden marker, a deployment by (SHA, environment).
type GitHub struct {
	o     GitHubOptions
	api   *gh.Client
	owner string
	repo  string
	log   *slog.Logger
	wg    sync.WaitGroup

	mu       sync.Mutex
	pending  map[string]*env.Notice
	running  map[string]bool
	comments map[int]*comment  // by pull request number
	deploys  map[string]int64  // "<environment>@<sha>" -> deployment id
	states   map[int64]string  // deployment id -> last state known
	commits  map[string]string // sha -> last commit status state and description
}

type comment struct {
	id   int64
	body string
}

// NewGitHub returns a notifier.
func NewGitHub(o GitHubOptions) *GitHub {
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &GitHub{
		o: o, api: o.Client.API(), owner: o.Client.Owner(), repo: o.Client.Repo(), log: o.Logger,
		pending: map[string]*env.Notice{}, running: map[string]bool{},
		comments: map[int]*comment{}, deploys: map[string]int64{}, states: map[int64]string{},
		commits: map[string]string{},
	}
}

// Notify queues n to be sent; it never blocks on GitHub.
func (g *GitHub) Notify(ctx context.Context, n env.Notice) error {
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
	g.pending[key] = &n
	if !g.running[key] {
		g.running[key] = true
		g.wg.Add(1)
		go g.drain(ctx, key)
	}
	return nil
}

// Wait blocks until every queued notice has been sent or dropped (its
// context ended, or GitHub refused it for good).
func (g *GitHub) Wait() { g.wg.Wait() }

func (g *GitHub) drain(ctx context.Context, key string) {
	defer g.wg.Done()
	for {
		g.mu.Lock()
		n := g.pending[key]
		delete(g.pending, key)
		if n == nil {
			delete(g.running, key)
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		delay := g.o.Backoff
		for {
			err := g.send(ctx, *n)
			if err == nil || ctx.Err() != nil {
				break
			}
			if permanent(err) {
				g.log.Warn("github refused a notice", "env", key, "err", err)
				break
			}
			g.mu.Lock()
			newer := g.pending[key] != nil
			g.mu.Unlock()
			if newer {
				break // the newer notice says more
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

// send makes GitHub show n. Each part is idempotent; a failed part fails
// the whole and it is all tried again.
func (g *GitHub) send(ctx context.Context, n env.Notice) error {
	var errs []error
	number := n.Env.Number
	if number == 0 {
		number = n.Source.Number
	}
	if n.Env.Kind == env.KindPullRequest && number > 0 {
		if err := g.syncComment(ctx, number, Render(n, g.o.DashboardURL)); err != nil {
			errs = append(errs, fmt.Errorf("comment: %w", err))
		}
	}
	if g.o.Deployments {
		if err := g.syncDeployment(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("deployment: %w", err))
		}
	}
	if g.o.CommitStatus {
		if err := g.syncCommitStatus(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("commit status: %w", err))
		}
	}
	return errors.Join(errs...)
}

// syncComment makes the pull request's previewd comment read body: it
// edits the comment it made before (found by its marker after a restart)
// or creates it.
func (g *GitHub) syncComment(ctx context.Context, number int, body string) error {
	g.mu.Lock()
	c := g.comments[number]
	g.mu.Unlock()
	if c == nil {
		found, err := g.findComment(ctx, number)
		if err != nil {
			return fmt.Errorf("finding the comment: %w", err)
		}
		c = found
	}
	if c != nil {
		if c.body == body {
			g.remember(number, c)
			return nil
		}
		_, _, err := g.api.Issues.EditComment(ctx, g.owner, g.repo, c.id, &gh.IssueComment{Body: gh.Ptr(body)})
		switch {
		case ghforge.IsNotFound(err):
			c = nil // deleted by someone: make it again
		case err != nil:
			return fmt.Errorf("editing comment %d: %w", c.id, err)
		default:
			g.remember(number, &comment{id: c.id, body: body})
			return nil
		}
	}
	made, _, err := g.api.Issues.CreateComment(ctx, g.owner, g.repo, number, &gh.IssueComment{Body: gh.Ptr(body)})
	if err != nil {
		// If the comment was made but the answer lost, the next attempt
		// finds it by its marker.
		g.forget(number)
		return fmt.Errorf("creating comment: %w", err)
	}
	g.remember(number, &comment{id: made.GetID(), body: body})
	return nil
}

func (g *GitHub) remember(number int, c *comment) {
	g.mu.Lock()
	g.comments[number] = c
	g.mu.Unlock()
}

func (g *GitHub) forget(number int) {
	g.mu.Lock()
	delete(g.comments, number)
	g.mu.Unlock()
}

// findComment looks through the pull request's comments, oldest first,
// for the one that starts with its marker.
func (g *GitHub) findComment(ctx context.Context, number int) (*comment, error) {
	marker := Marker(env.PullRequestKey(number))
	var found *comment
	path := fmt.Sprintf("repos/%s/%s/issues/%d/comments?per_page=100", url.PathEscape(g.owner), url.PathEscape(g.repo), number)
	err := g.o.Client.Pages(ctx, path, 100, func(body []byte) (bool, error) {
		var cs []struct {
			ID   int64  `json:"id"`
			Body string `json:"body"`
		}
		if err := json.Unmarshal(body, &cs); err != nil {
			return false, err
		}
		for _, c := range cs {
			if strings.HasPrefix(strings.TrimSpace(c.Body), marker) {
				found = &comment{id: c.ID, body: c.Body}
				return false, nil
			}
		}
		return true, nil
	})
	return found, err
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
// status along: in_progress while rolling out, then success or failure;
// on removal every deployment of the environment becomes inactive.
func (g *GitHub) syncDeployment(ctx context.Context, n env.Notice) error {
	envName, production := environment(n)
	var state string
	switch PhaseOf(n) {
	case PhaseBuilding, PhaseMigrating, PhaseStarting:
		state = "in_progress"
	case PhaseReady:
		state = "success"
	case PhaseFailed:
		state = "failure"
	case PhaseRemoved:
		return g.deactivate(ctx, envName, 0)
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
	g.mu.Lock()
	last := g.states[id]
	g.mu.Unlock()
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
		if u := g.logURL(n.Env.Key); u != "" {
			req.LogURL = gh.Ptr(u)
		}
		if _, _, err := g.api.Repositories.CreateDeploymentStatus(ctx, g.owner, g.repo, id, req); err != nil {
			return fmt.Errorf("setting deployment %d %s: %w", id, state, err)
		}
		g.mu.Lock()
		g.states[id] = state
		g.mu.Unlock()
	}
	if state == "success" {
		return g.deactivate(ctx, envName, id)
	}
	return nil
}

// deployment returns the deployment of sha to envName, creating it when
// GitHub has none.
func (g *GitHub) deployment(ctx context.Context, envName string, production bool, sha string, n env.Notice) (int64, error) {
	k := envName + "@" + sha
	g.mu.Lock()
	id := g.deploys[k]
	g.mu.Unlock()
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
		desc := "previewd: " + n.Env.Key
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
			Payload:               map[string]string{"previewd": n.Env.Key},
		})
		if err != nil {
			// A deployment made whose answer was lost is found by the
			// listing on the next attempt.
			return 0, fmt.Errorf("creating deployment: %w", err)
		}
		id = d.GetID()
	}
	g.mu.Lock()
	g.deploys[k] = id
	g.mu.Unlock()
	return id, nil
}

// deactivate marks every deployment of envName except keep inactive,
// unless it already is, or failed.
func (g *GitHub) deactivate(ctx context.Context, envName string, keep int64) error {
	var ids []int64
	path := fmt.Sprintf("repos/%s/%s/deployments?environment=%s&per_page=100", url.PathEscape(g.owner), url.PathEscape(g.repo), url.QueryEscape(envName))
	err := g.o.Client.Pages(ctx, path, 10, func(body []byte) (bool, error) {
		var ds []struct {
			ID          int64  `json:"id"`
			Environment string `json:"environment"`
		}
		if err := json.Unmarshal(body, &ds); err != nil {
			return false, err
		}
		for _, d := range ds {
			if d.ID != keep && d.Environment == envName {
				ids = append(ids, d.ID)
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("listing deployments: %w", err)
	}
	for _, id := range ids {
		g.mu.Lock()
		state, known := g.states[id]
		g.mu.Unlock()
		if !known {
			sts, _, err := g.api.Repositories.ListDeploymentStatuses(ctx, g.owner, g.repo, id, &gh.ListOptions{PerPage: 1})
			if err != nil {
				return fmt.Errorf("reading deployment %d: %w", id, err)
			}
			if len(sts) > 0 {
				state = sts[0].GetState()
			}
		}
		if state == "inactive" || state == "failure" || state == "error" {
			g.mu.Lock()
			g.states[id] = state
			g.mu.Unlock()
			continue
		}
		if _, _, err := g.api.Repositories.CreateDeploymentStatus(ctx, g.owner, g.repo, id, &gh.DeploymentStatusRequest{
			State: gh.Ptr("inactive"), Description: gh.Ptr("removed by previewd"), AutoInactive: gh.Ptr(false),
		}); err != nil {
			return fmt.Errorf("setting deployment %d inactive: %w", id, err)
		}
		g.mu.Lock()
		g.states[id] = "inactive"
		g.mu.Unlock()
	}
	return nil
}

// syncCommitStatus sets the "previewd" commit status of the SHA.
func (g *GitHub) syncCommitStatus(ctx context.Context, n env.Notice) error {
	var state string
	switch PhaseOf(n) {
	case PhaseWaiting, PhaseBuilding, PhaseMigrating, PhaseStarting:
		state = "pending"
	case PhaseReady:
		state = "success"
	case PhaseFailed:
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
	g.mu.Lock()
	same := g.commits[sha] == state+"\x00"+desc
	g.mu.Unlock()
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
	g.mu.Lock()
	if len(g.commits) > 10000 {
		clear(g.commits)
	}
	g.commits[sha] = state + "\x00" + desc
	g.mu.Unlock()
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
