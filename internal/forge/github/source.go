package github

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/githubapi"
)

// SourceOptions configure a Source.
type SourceOptions struct {
	// CloneURL is where the runtime fetches code (env.Source.Repo).
	CloneURL string
	// ProductionBranch becomes the production environment.
	ProductionBranch string
	// Filter decides which pull requests get environments.
	Filter Filter
	// WaitForChecks names check runs or status contexts that must be
	// green before a SHA is deployed.
	WaitForChecks []string
	// KeepLabel (lifecycle.keepLabel), on a pull request, sets
	// env.Source.Keep: its preview never sleeps or expires. Compared
	// case-insensitively, as GitHub does; empty: no label keeps.
	KeepLabel string
	// Fresh is how long a listing answers Refresh for keys that no
	// webhook marked stale; set it to the poll interval. Default 1m.
	Fresh time.Duration
	// FullEvery is how often List reads every page even when the first
	// page is unchanged. Default 10m.
	FullEvery time.Duration
	Logger    *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Source lists a repository's open pull requests and its production
// branch, and re-reads one of them on Refresh.
//
// Open pull requests are listed most recently updated first, and every
// change to a pull request (a push, a label, a title, draft or not,
// closing) updates it. So when the first page is unchanged (a 304, which
// costs no rate limit) the listing is taken as unchanged and the other
// pages are not asked for; every FullEvery they are (conditionally too),
// to notice a pull request closed far down the list whose webhook was
// lost. Between listings, Refresh answers from the listing unless a
// webhook marked the key stale (Invalidate), in which case it reads the
// pull request itself; the fresher answer wins.
type Source struct {
	c   *githubapi.Client
	o   SourceOptions
	log *slog.Logger

	mu        sync.Mutex
	firstURL  string
	pages     map[string]*page
	snap      map[int]*entry
	validated time.Time // when the snapshot last matched GitHub's listing
	lastFull  time.Time
	prod      *branchHead
	prodAt    time.Time
	single    map[int]*single
	stale     map[string]uint64
	gen       uint64
	checks    map[string]*cached // by URL
	green     map[string]bool    // SHAs whose checks all passed
	holds     map[string]string  // SHA -> the last hold Refresh found
	trusted   map[string]bool    // lower-case logins of trusted contributors
}

var _ interface {
	List(context.Context) ([]env.Source, error)
	Refresh(context.Context, string) (env.Source, bool, error)
} = (*Source)(nil)

// pull is the part of a pull request previewd reads.
type pull struct {
	Number int    `json:"number"`
	State  string `json:"state"`
	Title  string `json:"title"`
	Draft  bool   `json:"draft"`
	User   *struct {
		Login string `json:"login"`
	} `json:"user"`
	Labels []struct {
		Name string `json:"name"`
	} `json:"labels"`
	Head pullRef `json:"head"`
	Base pullRef `json:"base"`
}

type pullRef struct {
	Ref  string `json:"ref"`
	SHA  string `json:"sha"`
	Repo *struct {
		FullName string `json:"full_name"`
	} `json:"repo"`
}

type page struct {
	etag, next string
	pulls      []*pull
}

// entry is the latest known state of one pull request and when the
// request that read it began.
type entry struct {
	pr *pull
	at time.Time
}

type single struct {
	etag string
	pr   *pull
}

type branchHead struct {
	etag  string
	sha   string
	found bool
}

type cached struct {
	etag string
	body []byte
}

// maxPages bounds one listing (10,000 pull requests).
const maxPages = 100

// NewSource returns a Source reading through c.
func NewSource(c *githubapi.Client, o SourceOptions) *Source {
	if o.Fresh <= 0 {
		o.Fresh = time.Minute
	}
	if o.FullEvery <= 0 {
		o.FullEvery = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Source{
		c: c, o: o, log: o.Logger,
		firstURL: fmt.Sprintf("repos/%s/%s/pulls?state=open&sort=updated&direction=desc&per_page=100", url.PathEscape(c.Owner()), url.PathEscape(c.Repo())),
		pages:    map[string]*page{},
		snap:     map[int]*entry{},
		single:   map[int]*single{},
		stale:    map[string]uint64{},
		checks:   map[string]*cached{},
		green:    map[string]bool{},
		holds:    map[string]string{},
		trusted:  map[string]bool{},
	}
}

// SetTrusted replaces the trusted contributors (loaded from the store at
// start).
func (s *Source) SetTrusted(logins []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trusted = map[string]bool{}
	for _, l := range logins {
		s.trusted[strings.ToLower(l)] = true
	}
}

// Trust marks login trusted (true) or not: their fork pull requests
// need no fork label. The next List or Refresh sees it.
func (s *Source) Trust(login string, trusted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if trusted {
		s.trusted[strings.ToLower(login)] = true
	} else {
		delete(s.trusted, strings.ToLower(login))
	}
}

// Author returns the author of pull request n as last read, if known.
func (s *Source) Author(n int) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.snap[n]
	if e == nil || e.pr.User == nil {
		return "", false
	}
	return e.pr.User.Login, true
}

// KeptByLabel returns the keep label and whether pull request n carried
// it when last read.
func (s *Source) KeptByLabel(n int) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.snap[n]
	return s.o.KeepLabel, s.o.KeepLabel != "" && e != nil && hasLabel(e.pr, s.o.KeepLabel)
}

// PullsBy returns the numbers of the open pull requests by login, as
// last read.
func (s *Source) PullsBy(login string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for n, e := range s.snap {
		if e != nil && e.pr.User != nil && strings.EqualFold(e.pr.User.Login, login) {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// Invalidate marks key stale: the next Refresh reads it from GitHub
// instead of answering from the last listing. Webhooks call it.
func (s *Source) Invalidate(key string) {
	s.mu.Lock()
	s.gen++
	s.stale[key] = s.gen
	s.mu.Unlock()
}

// List returns the open pull requests that pass the filter and the
// production branch's head.
func (s *Source) List(ctx context.Context) ([]env.Source, error) {
	start := s.o.Now()
	s.mu.Lock()
	full := s.lastFull.IsZero() || start.Sub(s.lastFull) >= s.o.FullEvery
	first := s.pages[s.firstURL]
	s.mu.Unlock()

	p1, changed, err := s.fetchPage(ctx, s.firstURL, first)
	if err != nil {
		return nil, fmt.Errorf("listing pull requests: %w", err)
	}
	var pages map[string]*page
	var order []string
	if changed || full {
		pages, order = map[string]*page{s.firstURL: p1}, []string{s.firstURL}
		for u := p1.next; u != ""; {
			if _, seen := pages[u]; seen || len(pages) >= maxPages {
				break
			}
			s.mu.Lock()
			old := s.pages[u]
			s.mu.Unlock()
			p, _, err := s.fetchPage(ctx, u, old)
			if err != nil {
				return nil, fmt.Errorf("listing pull requests: %w", err)
			}
			pages[u], order = p, append(order, u)
			u = p.next
		}
	}
	prod, err := s.fetchBranch(ctx)
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if pages != nil {
		s.merge(pages, order, start)
		s.pages, s.lastFull = pages, start
	}
	s.validated = start
	if !start.Before(s.prodAt) {
		s.prod, s.prodAt = prod, start
	}
	out := make([]env.Source, 0, len(s.snap)+1)
	nums := make([]int, 0, len(s.snap))
	for n := range s.snap {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		if src, ok := s.toSource(s.snap[n].pr); ok {
			src.Hold = s.listedHold(src.SHA)
			out = append(out, src)
		}
	}
	if s.prod.found && git.IsSHA(s.prod.sha) {
		src := s.prodSource(s.prod.sha)
		src.Hold = s.listedHold(src.SHA)
		out = append(out, src)
	}
	return out, nil
}

// listedHold is the hold a listing reports without reading checks: none
// once the SHA's checks were all green, else the last reason Refresh
// found, else waiting for all of them. A held key is re-read with
// Refresh, which reads the checks. Call with s.mu held.
func (s *Source) listedHold(sha string) string {
	if len(s.o.WaitForChecks) == 0 || s.green[sha] {
		return ""
	}
	if h := s.holds[sha]; h != "" {
		return h
	}
	return holdReason(s.o.WaitForChecks, nil)
}

// merge replaces the snapshot with a complete listing that began at t0,
// keeping what Refresh read after t0 (open or closed), which is newer.
func (s *Source) merge(pages map[string]*page, order []string, t0 time.Time) {
	next := make(map[int]*entry, len(s.snap))
	for _, u := range order {
		for _, pr := range pages[u].pulls {
			next[pr.Number] = &entry{pr: pr, at: t0}
		}
	}
	for n, old := range s.snap {
		if old.at.After(t0) {
			next[n] = old
		}
	}
	for n := range s.single {
		if _, ok := next[n]; !ok {
			delete(s.single, n)
		}
	}
	s.snap = next
}

func (s *Source) fetchPage(ctx context.Context, u string, old *page) (*page, bool, error) {
	etag := ""
	if old != nil {
		etag = old.etag
	}
	body, tag, next, err := s.c.Get(ctx, u, etag)
	if errors.Is(err, githubapi.ErrNotModified) && old != nil {
		return old, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var pulls []*pull
	if err := json.Unmarshal(body, &pulls); err != nil {
		return nil, false, fmt.Errorf("decoding pull requests: %w", err)
	}
	return &page{etag: tag, next: next, pulls: pulls}, true, nil
}

// Refresh re-reads one key: a pull request or production. It answers from
// the last listing when that is fresh and no webhook marked the key
// stale. Closed, merged, missing and filtered-out pull requests are not
// found.
func (s *Source) Refresh(ctx context.Context, key string) (env.Source, bool, error) {
	if key == env.ProductionKey {
		return s.refreshProduction(ctx)
	}
	n, ok := prNumber(key)
	if !ok {
		return env.Source{}, false, nil
	}
	start := s.o.Now()
	s.mu.Lock()
	gen, stale := s.stale[key]
	fresh := !s.validated.IsZero() && start.Sub(s.validated) <= s.o.Fresh
	s.mu.Unlock()
	if stale || !fresh {
		pr, err := s.fetchPR(ctx, n)
		if err != nil {
			return env.Source{}, false, fmt.Errorf("reading pull request %d: %w", n, err)
		}
		s.mu.Lock()
		if cur := s.snap[n]; cur == nil || !cur.at.After(start) {
			s.snap[n] = &entry{pr: pr, at: start}
		}
		if s.stale[key] == gen {
			delete(s.stale, key)
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	e := s.snap[n]
	var src env.Source
	if e != nil {
		src, ok = s.toSource(e.pr)
	}
	s.mu.Unlock()
	if e == nil || !ok {
		return env.Source{}, false, nil
	}
	if len(s.o.WaitForChecks) > 0 {
		hold, err := s.checkHold(ctx, src.SHA)
		if err != nil {
			return env.Source{}, false, err
		}
		src.Hold = hold
	}
	return src, true, nil
}

func (s *Source) refreshProduction(ctx context.Context) (env.Source, bool, error) {
	start := s.o.Now()
	s.mu.Lock()
	gen, stale := s.stale[env.ProductionKey]
	fresh := !s.validated.IsZero() && start.Sub(s.validated) <= s.o.Fresh
	b := s.prod
	s.mu.Unlock()
	if stale || !fresh || b == nil {
		nb, err := s.fetchBranch(ctx)
		if err != nil {
			return env.Source{}, false, err
		}
		s.mu.Lock()
		if !start.Before(s.prodAt) {
			s.prod, s.prodAt = nb, start
		}
		if s.stale[env.ProductionKey] == gen {
			delete(s.stale, env.ProductionKey)
		}
		b = s.prod
		s.mu.Unlock()
	}
	if !b.found || !git.IsSHA(b.sha) {
		return env.Source{}, false, nil
	}
	src := s.prodSource(b.sha)
	if len(s.o.WaitForChecks) > 0 {
		hold, err := s.checkHold(ctx, src.SHA)
		if err != nil {
			return env.Source{}, false, err
		}
		src.Hold = hold
	}
	return src, true, nil
}

func (s *Source) fetchPR(ctx context.Context, n int) (*pull, error) {
	s.mu.Lock()
	old := s.single[n]
	s.mu.Unlock()
	etag := ""
	if old != nil {
		etag = old.etag
	}
	body, tag, _, err := s.c.Get(ctx, fmt.Sprintf("repos/%s/%s/pulls/%d", url.PathEscape(s.c.Owner()), url.PathEscape(s.c.Repo()), n), etag)
	switch {
	case errors.Is(err, githubapi.ErrNotModified) && old != nil:
		return old.pr, nil
	case githubapi.IsNotFound(err):
		s.mu.Lock()
		delete(s.single, n)
		s.mu.Unlock()
		return &pull{Number: n, State: "closed"}, nil
	case err != nil:
		return nil, err
	}
	var pr pull
	if err := json.Unmarshal(body, &pr); err != nil {
		return nil, fmt.Errorf("decoding pull request: %w", err)
	}
	if pr.Number != n {
		return nil, fmt.Errorf("asked for pull request %d, got %d", n, pr.Number)
	}
	s.mu.Lock()
	if tag != "" {
		s.single[n] = &single{etag: tag, pr: &pr}
	}
	s.mu.Unlock()
	return &pr, nil
}

func (s *Source) fetchBranch(ctx context.Context) (*branchHead, error) {
	s.mu.Lock()
	old := s.prod
	s.mu.Unlock()
	etag := ""
	if old != nil {
		etag = old.etag
	}
	path := fmt.Sprintf("repos/%s/%s/branches/%s", url.PathEscape(s.c.Owner()), url.PathEscape(s.c.Repo()), url.PathEscape(s.o.ProductionBranch))
	body, tag, _, err := s.c.Get(ctx, path, etag)
	switch {
	case errors.Is(err, githubapi.ErrNotModified) && old != nil:
		return old, nil
	case githubapi.IsNotFound(err):
		return &branchHead{}, nil
	case err != nil:
		return nil, fmt.Errorf("reading branch %s: %w", s.o.ProductionBranch, err)
	}
	var b struct {
		Commit struct {
			SHA string `json:"sha"`
		} `json:"commit"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("decoding branch: %w", err)
	}
	return &branchHead{etag: tag, sha: b.Commit.SHA, found: true}, nil
}

// toSource turns an open pull request that passes the filter into an
// env.Source. Call with s.mu held.
func (s *Source) toSource(pr *pull) (env.Source, bool) {
	if pr.State != "open" || pr.Number <= 0 || !git.IsSHA(pr.Head.SHA) {
		return env.Source{}, false
	}
	d := s.o.Filter.Decide(s.pullRequest(pr))
	if !d.OK {
		return env.Source{}, false
	}
	return env.Source{
		Key:     env.PullRequestKey(pr.Number),
		Kind:    env.KindPullRequest,
		Number:  pr.Number,
		Branch:  pr.Head.Ref,
		SHA:     pr.Head.SHA,
		Repo:    s.o.CloneURL,
		Ref:     "refs/pull/" + strconv.Itoa(pr.Number) + "/head",
		Title:   pr.Title,
		Fork:    s.isFork(pr),
		Base:    pr.Base.Ref,
		BaseSHA: baseSHA(pr),
		Trusted: d.Trusted,
		Keep:    s.o.KeepLabel != "" && hasLabel(pr, s.o.KeepLabel),
		DBTier:  dbTierOf(pr),
	}, true
}

// baseSHA is the commit of the pull request's base, when GitHub gave a
// well-formed one.
func baseSHA(pr *pull) string {
	if git.IsSHA(pr.Base.SHA) {
		return pr.Base.SHA
	}
	return ""
}

// DBTierLabel is the prefix of the labels that choose a pull request's
// database tier: preview:db=schema, preview:db=clone, preview:db=empty.
const DBTierLabel = "preview:db="

// dbTierOf returns the tier pr's DBTierLabel labels ask for (any case),
// or "" when none does. Several different ones, or an unknown tier, are
// returned as written (joined with ", "): the reconciler then uses the
// default tier and says why on the PR, rather than guessing.
func dbTierOf(pr *pull) string {
	var tiers []string
	for _, l := range pr.Labels {
		if len(l.Name) < len(DBTierLabel) || !strings.EqualFold(l.Name[:len(DBTierLabel)], DBTierLabel) {
			continue
		}
		t := strings.ToLower(strings.TrimSpace(l.Name[len(DBTierLabel):]))
		if !slices.Contains(tiers, t) {
			tiers = append(tiers, t)
		}
	}
	sort.Strings(tiers)
	return strings.Join(tiers, ", ")
}

// hasLabel reports whether pr carries the label name (any case).
func hasLabel(pr *pull, name string) bool {
	for _, l := range pr.Labels {
		if strings.EqualFold(l.Name, name) {
			return true
		}
	}
	return false
}

func (s *Source) pullRequest(pr *pull) PullRequest {
	labels := make([]string, len(pr.Labels))
	for i, l := range pr.Labels {
		labels[i] = l.Name
	}
	author := ""
	if pr.User != nil {
		author = strings.ToLower(pr.User.Login)
	}
	return PullRequest{Number: pr.Number, Draft: pr.Draft, Labels: labels, HeadBranch: pr.Head.Ref, BaseBranch: pr.Base.Ref, Fork: s.isFork(pr), TrustedAuthor: author != "" && s.trusted[author]}
}

// isFork compares the head's repository with this one. (The "fork" flag
// of the head repository says whether that repository is a fork, which
// is also true for a branch of a repository that is itself a fork.)
func (s *Source) isFork(pr *pull) bool {
	return pr.Head.Repo == nil || !strings.EqualFold(pr.Head.Repo.FullName, s.c.Owner()+"/"+s.c.Repo())
}

func (s *Source) prodSource(sha string) env.Source {
	b := s.o.ProductionBranch
	return env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: b, SHA: sha, Repo: s.o.CloneURL, Ref: "refs/heads/" + b, Trusted: true}
}

// KeysForSHA returns the keys whose head is sha (for check events).
func (s *Source) KeysForSHA(sha string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for n, e := range s.snap {
		if e.pr.State == "open" && e.pr.Head.SHA == sha {
			keys = append(keys, env.PullRequestKey(n))
		}
	}
	if s.prod != nil && s.prod.found && s.prod.sha == sha {
		keys = append(keys, env.ProductionKey)
	}
	sort.Strings(keys)
	return keys
}

// WaitsForChecks reports whether deployments wait for checks.
func (s *Source) WaitsForChecks() bool { return len(s.o.WaitForChecks) > 0 }

// GitEnv returns the environment that lets git fetch from the clone URL
// with the client's token: a http.<url>.extraHeader setting passed through
// GIT_CONFIG_COUNT/KEY/VALUE, so the token is never on a command line and
// is only sent to the clone URL's host. It is empty when the clone URL is
// not http(s) (a local path needs no credentials) or there is no token.
func (s *Source) GitEnv(ctx context.Context) ([]string, error) {
	u, err := url.Parse(s.o.CloneURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, nil
	}
	token, err := s.c.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("getting a token for git: %w", err)
	}
	if token == "" {
		return nil, nil
	}
	basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
	return []string{
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=http." + u.Scheme + "://" + u.Host + "/.extraHeader",
		"GIT_CONFIG_VALUE_0=Authorization: Basic " + basic,
	}, nil
}

func prNumber(key string) (int, bool) {
	rest, ok := strings.CutPrefix(key, "pr-")
	if !ok || rest == "" || rest[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}

// Client returns the source's client.
func (s *Source) Client() *githubapi.Client { return s.c }
