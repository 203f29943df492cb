package ghtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PR is one pull request of the fake repository.
type PR struct {
	Number  int
	Title   string
	HeadRef string
	HeadSHA string
	BaseRef string
	// HeadRepo is the head's repository ("owner/name"); empty means this
	// repository. HeadRepoDeleted makes head.repo null.
	HeadRepo        string
	HeadRepoDeleted bool
	// Author is the pull request's user; empty means the head's owner.
	Author string
	Labels []string
	Draft  bool
	// State is open or closed.
	State     string
	Merged    bool
	UpdatedAt time.Time
}

// Comment is an issue comment.
type Comment struct {
	ID        int64
	Body      string
	User      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Deployment is a deployment with its statuses, oldest first.
type Deployment struct {
	ID                     int64
	SHA, Ref, Environment  string
	Description            string
	Transient, Production  bool
	AutoMerge              bool
	RequiredContexts       []string
	RequiredContextsWasSet bool
	Statuses               []DeploymentStatus
}

// State returns the latest status's state, or "".
func (d Deployment) State() string {
	if len(d.Statuses) == 0 {
		return ""
	}
	return d.Statuses[len(d.Statuses)-1].State
}

// DeploymentStatus is one status of a deployment.
type DeploymentStatus struct {
	ID             int64
	State          string
	EnvironmentURL string
	LogURL         string
	Description    string
}

// CommitStatus is a commit status.
type CommitStatus struct {
	State, Context, TargetURL, Description string
}

// CheckRun is a check run on a commit.
type CheckRun struct {
	ID                       int64
	Name, Status, Conclusion string
}

// Faults inject failures into a fraction of API requests (0 to 1 each).
type Faults struct {
	// ServerErrors answer 502.
	ServerErrors float64
	// SecondaryLimits answer 403 "secondary rate limit" with Retry-After.
	SecondaryLimits float64
	// RetryAfter is the Retry-After in seconds. Default 1.
	RetryAfter int
	// Slow requests take Delay: half of them before being handled (and
	// not handled at all if the client gave up), half after (the change
	// is made but the answer comes late, as when a response is lost).
	Slow  float64
	Delay time.Duration
}

// Fault is a one-off failure for FailNext.
type Fault int

// The faults FailNext injects.
const (
	Fault5xx Fault = iota
	FaultSecondary
	FaultPrimary
	FaultSlow
)

// Stats counts what the fake answered.
type Stats struct {
	// Requests is every API request.
	Requests int
	// NotModified is how many were answered 304.
	NotModified int
	// RateUsed is how many counted against the primary rate limit (all
	// but 304s).
	RateUsed int
}

// Server is a small stateful GitHub REST API for one repository: pull
// requests, branches, issue comments, deployments and their statuses,
// commit statuses and check runs. Every response is built from the real
// fixtures in testdata by changing values in the decoded JSON. It answers
// conditional GETs with 304, paginates with Link headers (following
// GitHub in switching later pages to /repositories/{id}/...), and injects
// faults. The API is served at the root and under /api/v3/ (Enterprise).
type Server struct {
	*httptest.Server
	Owner, Repo string
	// RepoID is the repository's id in /repositories/{id}/ links.
	RepoID int64
	// User is the login comments and deployments are created as.
	User string

	mu          sync.Mutex
	prs         map[int]*PR
	branches    map[string]string
	comments    map[int][]*Comment
	deployments []*Deployment
	statuses    map[string][]CommitStatus
	checks      map[string][]CheckRun
	nextID      int64
	clock       time.Time
	version     int
	pageCache   map[string]cachedPage
	faults      Faults
	oneOff      []Fault
	rng         *rand.Rand
	stats       Stats
	routes      map[string]int
	permissions map[string]string
	reactions   map[int64][]string
	limitReset  time.Time
	mux         *http.ServeMux
}

type cachedPage struct {
	etag, link string
	body       []byte
}

// New starts a fake for owner/repo; it is closed when the test ends.
func New(t testing.TB, owner, repo string) *Server {
	s := &Server{
		Owner: owner, Repo: repo, RepoID: 515435940, User: "previewd[bot]",
		prs: map[int]*PR{}, branches: map[string]string{}, comments: map[int][]*Comment{},
		statuses: map[string][]CommitStatus{}, checks: map[string][]CheckRun{},
		nextID: 1000, clock: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		pageCache: map[string]cachedPage{}, rng: rand.New(rand.NewPCG(1, 2)), routes: map[string]int{},
		permissions: map[string]string{}, reactions: map[int64][]string{},
	}
	s.mux = http.NewServeMux()
	s.routesInit()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	if t != nil {
		t.Cleanup(s.Close)
	}
	return s
}

// APIURL is the base URL to configure as apiURL.
func (s *Server) APIURL() string { return s.URL + "/" }

// SetFaults sets the injected failure rates.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	if f.RetryAfter == 0 {
		f.RetryAfter = 1
	}
	s.faults = f
	s.mu.Unlock()
}

// FailNext makes the next len(faults) requests fail in the given ways.
func (s *Server) FailNext(faults ...Fault) {
	s.mu.Lock()
	s.oneOff = append(s.oneOff, faults...)
	s.mu.Unlock()
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Count returns how many requests matched a route pattern, e.g.
// "GET /repos/{owner}/{repo}/pulls".
func (s *Server) Count(pattern string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes[pattern]
}

// tick advances the fake clock and returns it; every change gets a
// distinct, increasing time.
func (s *Server) tick() time.Time {
	now := time.Now().UTC().Truncate(time.Second)
	if !now.After(s.clock) {
		now = s.clock.Add(time.Second)
	}
	s.clock = now
	return now
}

// OpenPR adds (or replaces) a pull request. Empty fields get defaults:
// title "PR N", state open, base main, head ref pr-N.
func (s *Server) OpenPR(pr PR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr.Title == "" {
		pr.Title = fmt.Sprintf("PR %d", pr.Number)
	}
	if pr.State == "" {
		pr.State = "open"
	}
	if pr.BaseRef == "" {
		pr.BaseRef = "main"
	}
	if pr.HeadRef == "" {
		pr.HeadRef = fmt.Sprintf("pr-%d", pr.Number)
	}
	pr.UpdatedAt = s.tick()
	s.prs[pr.Number] = &pr
	s.changed()
}

// UpdatePR changes pull request n with fn (and bumps its updated_at).
func (s *Server) UpdatePR(n int, fn func(*PR)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr := s.prs[n]
	if pr == nil {
		panic(fmt.Sprintf("ghtest: no pull request %d", n))
	}
	fn(pr)
	pr.UpdatedAt = s.tick()
	s.changed()
}

// ClosePR closes pull request n, merged or not.
func (s *Server) ClosePR(n int, merged bool) {
	s.UpdatePR(n, func(pr *PR) { pr.State, pr.Merged = "closed", merged })
}

// PR returns a copy of pull request n.
func (s *Server) PR(n int) (PR, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.prs[n]
	if !ok {
		return PR{}, false
	}
	return *pr, true
}

// SetBranch points a branch at sha.
func (s *Server) SetBranch(name, sha string) {
	s.mu.Lock()
	s.branches[name] = sha
	s.mu.Unlock()
}

// AddComment adds a comment as user (for comments previewd did not write).
func (s *Server) AddComment(n int, user, body string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addComment(n, user, body).ID
}

func (s *Server) addComment(n int, user, body string) *Comment {
	s.nextID++
	now := s.tick()
	c := &Comment{ID: s.nextID, Body: body, User: user, CreatedAt: now, UpdatedAt: now}
	s.comments[n] = append(s.comments[n], c)
	return c
}

// Comments returns the comments on issue n, oldest first.
func (s *Server) Comments(n int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Comment, len(s.comments[n]))
	for i, c := range s.comments[n] {
		out[i] = *c
	}
	return out
}

// Deployments returns every deployment, oldest first.
func (s *Server) Deployments() []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Deployment, len(s.deployments))
	for i, d := range s.deployments {
		out[i] = *d
		out[i].Statuses = append([]DeploymentStatus(nil), d.Statuses...)
	}
	return out
}

// CommitStatuses returns the statuses set on sha, oldest first.
func (s *Server) CommitStatuses(sha string) []CommitStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CommitStatus(nil), s.statuses[sha]...)
}

// SetCheckRun adds or updates the check run called name on sha.
func (s *Server) SetCheckRun(sha, name, status, conclusion string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.checks[sha] {
		if c.Name == name {
			s.checks[sha][i].Status, s.checks[sha][i].Conclusion = status, conclusion
			return
		}
	}
	s.nextID++
	s.checks[sha] = append(s.checks[sha], CheckRun{ID: s.nextID, Name: name, Status: status, Conclusion: conclusion})
}

// SetCommitStatus sets a commit status as CI would.
func (s *Server) SetCommitStatus(sha, context, state string) {
	s.mu.Lock()
	s.statuses[sha] = append(s.statuses[sha], CommitStatus{State: state, Context: context})
	s.mu.Unlock()
}

func (s *Server) changed() {
	s.version++
	clear(s.pageCache)
}

// serve applies faults and accounting around the routes.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if p, ok := strings.CutPrefix(r.URL.Path, "/api/v3"); ok {
		r.URL.Path = p
		r.URL.RawPath = ""
		r = r.WithContext(context.WithValue(r.Context(), prefixedKey{}, true))
	}
	// Read the request first, as a server does before acting on it; it
	// also lets the server notice when the client gives up.
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	fault, slowAfter := s.pickFault()
	if fault == FaultSlow && !slowAfter {
		select {
		case <-time.After(s.delay()):
		case <-r.Context().Done():
			return // the client gave up before anything was done
		}
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	switch fault {
	case Fault5xx:
		rec.header.Set("Content-Type", "text/html")
		rec.WriteHeader(http.StatusBadGateway)
		rec.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
	case FaultSecondary:
		s.writeMapping(rec, "rest/recorded/hub4j/error-403-secondary-rate-limit.mapping.json", func(h http.Header) {
			h.Set("Retry-After", strconv.Itoa(s.retryAfter()))
		})
	case FaultPrimary:
		s.mu.Lock()
		s.limitReset = time.Now().Add(time.Second)
		s.mu.Unlock()
		s.writeMapping(rec, "rest/recorded/hub4j/error-403-secondary-rate-limit.mapping.json", func(h http.Header) {
			h.Del("gh-limited-by")
		})
		rec.body.Reset()
		rec.Write([]byte(`{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}`))
	default:
		s.mux.ServeHTTP(rec, r)
	}
	if r.Method == http.MethodGet && rec.code == http.StatusOK && rec.header.Get("ETag") == "" {
		rec.header.Set("ETag", etag(rec.body.Bytes()))
	}
	if r.Method == http.MethodGet && rec.code == http.StatusOK && matches(r.Header.Get("If-None-Match"), rec.header.Get("ETag")) {
		rec.code = http.StatusNotModified
		rec.body.Reset()
		rec.header.Del("Content-Type")
	}
	s.account(rec, r)
	if fault == FaultSlow && slowAfter {
		select {
		case <-time.After(s.delay()):
		case <-r.Context().Done():
			return // the change is made; the answer is lost
		}
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.code)
	w.Write(rec.body.Bytes())
}

func (s *Server) pickFault() (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.oneOff) > 0 {
		f := s.oneOff[0]
		s.oneOff = s.oneOff[1:]
		return f, s.rng.IntN(2) == 0
	}
	f := s.faults
	x := s.rng.Float64()
	switch {
	case x < f.ServerErrors:
		return Fault5xx, false
	case x < f.ServerErrors+f.SecondaryLimits:
		return FaultSecondary, false
	case x < f.ServerErrors+f.SecondaryLimits+f.Slow:
		return FaultSlow, s.rng.IntN(2) == 0
	}
	return -1, false
}

func (s *Server) delay() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.Delay > 0 {
		return s.faults.Delay
	}
	return 2 * time.Second
}

func (s *Server) retryAfter() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.RetryAfter > 0 {
		return s.faults.RetryAfter
	}
	return 1
}

// account sets the rate-limit headers and counts the request. A 304 does
// not use the rate limit.
func (s *Server) account(rec *recorder, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	if rec.code == http.StatusNotModified {
		s.stats.NotModified++
	} else {
		s.stats.RateUsed++
	}
	if rec.pattern != "" {
		s.routes[rec.pattern]++
	}
	reset := time.Now().Add(time.Hour)
	remaining := 5000 - s.stats.RateUsed
	if time.Now().Before(s.limitReset) {
		reset, remaining = s.limitReset, 0
	}
	if remaining < 0 {
		remaining = 0
	}
	h := rec.header
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-RateLimit-Used", strconv.Itoa(s.stats.RateUsed))
	h.Set("X-RateLimit-Resource", "core")
	h.Set("X-GitHub-Request-Id", fmt.Sprintf("FAKE:%d", s.stats.Requests))
}

// writeMapping answers with a recorded mapping's status, headers and
// body. Templated headers (Date, X-RateLimit-*) are left to account.
func (s *Server) writeMapping(w http.ResponseWriter, name string, edit func(http.Header)) {
	status, headers, body := mapping(name)
	for k, v := range headers {
		if strings.HasPrefix(k, "X-RateLimit") || k == "Date" || k == "Last-Modified" || k == "ETag" {
			continue
		}
		switch v := v.(type) {
		case string:
			w.Header().Set(k, v)
		case []any:
			for _, x := range v {
				w.Header().Add(k, fmt.Sprint(x))
			}
		}
	}
	if edit != nil {
		edit(w.Header())
	}
	w.WriteHeader(status)
	w.Write([]byte(body))
}

func (s *Server) notFound(w http.ResponseWriter) {
	s.writeMapping(w, "rest/recorded/hub4j/error-404-not-found.mapping.json", nil)
}

func etag(body []byte) string {
	sum := sha256.Sum256(body)
	return `W/"` + hex.EncodeToString(sum[:16]) + `"`
}

func matches(ifNoneMatch, tag string) bool {
	if ifNoneMatch == "" || tag == "" {
		return false
	}
	strip := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "W/") }
	for c := range strings.SplitSeq(ifNoneMatch, ",") {
		if strip(c) == strip(tag) {
			return true
		}
	}
	return false
}

// recorder buffers a response so that faults can delay it and ETags can
// be computed over it.
type recorder struct {
	header  http.Header
	code    int
	body    bytes.Buffer
	pattern string
	wrote   bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code = code
		r.wrote = true
	}
}

// writeJSON answers with v encoded as GitHub does.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

type prefixedKey struct{}

// base is the API's base URL as the client called it.
func base(r *http.Request) string {
	b := "http://" + r.Host
	if r.Context().Value(prefixedKey{}) != nil {
		b += "/api/v3"
	}
	return b
}

// paginate cuts items to the page asked for and sets the Link header,
// with later pages under /repositories/{id}/ as GitHub does.
func (s *Server) paginate(w http.ResponseWriter, r *http.Request, n int, pathAfterRepo string) (lo, hi int) {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	if per > 100 {
		per = 100
	}
	pg, _ := strconv.Atoi(q.Get("page"))
	if pg < 1 {
		pg = 1
	}
	last := max((n+per-1)/per, 1)
	lo, hi = min((pg-1)*per, n), min(pg*per, n)
	link := func(p int) string {
		q2 := url.Values{}
		for k, v := range q {
			q2[k] = v
		}
		q2.Set("page", strconv.Itoa(p))
		q2.Set("per_page", strconv.Itoa(per))
		return fmt.Sprintf("<%s/repositories/%d/%s?%s>", base(r), s.RepoID, pathAfterRepo, q2.Encode())
	}
	var links []string
	if pg > 1 {
		links = append(links, link(pg-1)+`; rel="prev"`)
	}
	if pg < last {
		links = append(links, link(pg+1)+`; rel="next"`, link(last)+`; rel="last"`)
	}
	if pg > 1 {
		links = append(links, link(1)+`; rel="first"`)
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	return lo, hi
}

// sortPRs orders pull requests as GET /pulls does for sort and direction.
func sortPRs(prs []*PR, by, dir string) {
	less := func(a, b *PR) bool {
		if by == "updated" && !a.UpdatedAt.Equal(b.UpdatedAt) {
			return a.UpdatedAt.Before(b.UpdatedAt)
		}
		return a.Number < b.Number
	}
	sort.Slice(prs, func(i, j int) bool {
		if dir == "asc" {
			return less(prs[i], prs[j])
		}
		return less(prs[j], prs[i])
	})
}
