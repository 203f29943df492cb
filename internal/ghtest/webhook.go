package ghtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	gh "github.com/google/go-github/v88/github"
)

// Sign returns the X-Hub-Signature-256 header GitHub sends for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// NewDelivery returns a signed webhook request as GitHub sends it: the
// exact bytes of body, signed with secret (no signature if secret is
// empty), with a fresh X-GitHub-Delivery.
func NewDelivery(url, secret, event string, body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.RequestURI = ""
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/fake")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", newGUID())
	req.Header.Set("X-GitHub-Hook-ID", "1")
	if secret != "" {
		req.Header.Set("X-Hub-Signature-256", Sign(secret, body))
	}
	return req
}

// Deliver POSTs a signed delivery to url and returns the status and body.
func Deliver(client *http.Client, url, secret, event string, body []byte) (int, string, error) {
	resp, err := client.Do(NewDelivery(url, secret, event, body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func newGUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// PullRequestEvent returns the body of a pull_request delivery for
// pull request n as it is now: the fixture webhooks/pull_request.<action>.json
// with its pull_request replaced by the API's rendering of n (which has
// the same shape) and its repository made this one. Pretty-printed like
// the fixtures.
func (s *Server) PullRequestEvent(action string, n int) []byte {
	m := object("webhooks/pull_request." + action + ".json")
	s.mu.Lock()
	pr := s.prs[n]
	if pr == nil {
		s.mu.Unlock()
		panic(fmt.Sprintf("ghtest: no pull request %d", n))
	}
	r := httptest.NewRequest(http.MethodGet, s.URL, nil)
	m["pull_request"] = s.renderPR(r, pr, true)
	s.mu.Unlock()
	m["number"] = n
	if action == "synchronize" {
		m["after"] = pr.HeadSHA
	}
	setRepo(m["repository"], s.Owner+"/"+s.Repo, false)
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// PushEvent returns the body of a push delivery to branch at its current
// SHA. No push fixture is in testdata: the body is the repository and
// sender objects of webhooks/pull_request.opened.json with the push
// event's documented top-level fields.
func (s *Server) PushEvent(branch, before string) []byte {
	src := object("webhooks/pull_request.opened.json")
	s.mu.Lock()
	after := s.branches[branch]
	s.mu.Unlock()
	repo := src["repository"]
	setRepo(repo, s.Owner+"/"+s.Repo, false)
	m := map[string]any{
		"ref": "refs/heads/" + branch, "before": before, "after": after,
		"created": false, "deleted": false, "forced": false, "base_ref": nil,
		"compare":     fmt.Sprintf("https://github.com/%s/%s/compare/%.12s...%.12s", s.Owner, s.Repo, before, after),
		"commits":     []any{},
		"head_commit": nil,
		"repository":  repo,
		"pusher":      map[string]any{"name": s.Owner, "email": s.Owner + "@users.noreply.github.com"},
		"sender":      src["sender"],
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// Forged returns body with the repository renamed, for deliveries that
// must be ignored as another repository's.
func Forged(body []byte, fullName string) []byte {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		panic(err)
	}
	setRepo(m["repository"], fullName, false)
	b, _ := json.MarshalIndent(m, "", "  ")
	return b
}

// CheckRunEvent returns the body of a check_run delivery for the named
// run on sha. No check_run fixture is in testdata: the body is go-github's
// CheckRunEvent with the repository object of
// webhooks/pull_request.opened.json.
func (s *Server) CheckRunEvent(sha, name string) []byte {
	s.mu.Lock()
	var run CheckRun
	for _, c := range s.checks[sha] {
		if c.Name == name {
			run = c
		}
	}
	var prs []*gh.PullRequest
	for _, pr := range s.prs {
		if pr.HeadSHA == sha && pr.State == "open" {
			prs = append(prs, &gh.PullRequest{Number: gh.Ptr(pr.Number)})
		}
	}
	s.mu.Unlock()
	cr := &gh.CheckRun{ID: gh.Ptr(run.ID), Name: gh.Ptr(name), HeadSHA: gh.Ptr(sha), Status: gh.Ptr(run.Status), PullRequests: prs}
	if run.Conclusion != "" {
		cr.Conclusion = gh.Ptr(run.Conclusion)
	}
	ev, _ := json.Marshal(&gh.CheckRunEvent{Action: gh.Ptr(run.Status), CheckRun: cr})
	var m map[string]any
	json.Unmarshal(ev, &m)
	repo := object("webhooks/pull_request.opened.json")["repository"]
	setRepo(repo, s.Owner+"/"+s.Repo, false)
	m["repository"] = repo
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}
