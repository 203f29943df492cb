package ghtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	gh "github.com/google/go-github/v88/github"
)

func sha(n int) string { return fmt.Sprintf("%040x", n) }

func call(t *testing.T, method, url string, body any, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestShapes decodes the fake's answers with go-github's types and checks
// the values the fake set, at the root and under /api/v3/.
func TestShapes(t *testing.T) {
	s := New(t, "acme", "shop")
	s.SetBranch("main", sha(1))
	s.OpenPR(PR{Number: 7, HeadSHA: sha(7), Labels: []string{"preview"}, HeadRepo: "someone/shop", Draft: true})
	for _, prefix := range []string{"", "/api/v3"} {
		api := s.URL + prefix + "/repos/acme/shop"
		resp, body := call(t, "GET", api+"/pulls/7", nil, nil)
		var pr gh.PullRequest
		if err := json.Unmarshal(body, &pr); err != nil || resp.StatusCode != 200 {
			t.Fatalf("pull: %d %v", resp.StatusCode, err)
		}
		if pr.GetNumber() != 7 || pr.GetHead().GetSHA() != sha(7) || pr.GetHead().GetRepo().GetFullName() != "someone/shop" ||
			!pr.GetDraft() || pr.GetBase().GetRepo().GetFullName() != "acme/shop" || len(pr.Labels) != 1 || pr.Labels[0].GetName() != "preview" {
			t.Errorf("pull = %+v", pr)
		}
		// A conditional request for an unchanged list is a 304.
		resp, _ = call(t, "GET", api+"/pulls?state=open", nil, nil)
		resp2, body2 := call(t, "GET", api+"/pulls?state=open", nil, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
		if resp2.StatusCode != http.StatusNotModified || len(body2) != 0 {
			t.Errorf("conditional list: %d", resp2.StatusCode)
		}
		var b gh.Branch
		_, body = call(t, "GET", api+"/branches/main", nil, nil)
		if json.Unmarshal(body, &b); b.GetCommit().GetSHA() != sha(1) {
			t.Errorf("branch = %s", body)
		}
		var c gh.IssueComment
		resp, body = call(t, "POST", api+"/issues/7/comments", map[string]string{"body": "hi"}, nil)
		if json.Unmarshal(body, &c); resp.StatusCode != 201 || c.GetBody() != "hi" || c.GetID() == 0 {
			t.Errorf("comment: %d %s", resp.StatusCode, body)
		}
		var d gh.Deployment
		resp, body = call(t, "POST", api+"/deployments", map[string]any{"ref": sha(7), "environment": "preview/pr-7", "transient_environment": true}, nil)
		if json.Unmarshal(body, &d); resp.StatusCode != 201 || d.GetSHA() != sha(7) || d.GetEnvironment() != "preview/pr-7" {
			t.Errorf("deployment: %d %s", resp.StatusCode, body)
		}
		var ds gh.DeploymentStatus
		resp, body = call(t, "POST", fmt.Sprintf("%s/deployments/%d/statuses", api, d.GetID()), map[string]any{"state": "success", "environment_url": "http://x"}, nil)
		if json.Unmarshal(body, &ds); resp.StatusCode != 201 || ds.GetState() != "success" || ds.GetEnvironmentURL() != "http://x" {
			t.Errorf("deployment status: %d %s", resp.StatusCode, body)
		}
		s.SetCommitStatus(sha(7), "ci", "success")
		var cs gh.CombinedStatus
		_, body = call(t, "GET", api+"/commits/"+sha(7)+"/status", nil, nil)
		if json.Unmarshal(body, &cs); cs.GetState() != "success" || len(cs.Statuses) != 1 || cs.Statuses[0].GetContext() != "ci" {
			t.Errorf("combined status: %s", body)
		}
		resp, body = call(t, "GET", api+"/pulls/99", nil, nil)
		if resp.StatusCode != 404 || !strings.Contains(string(body), "Not Found") {
			t.Errorf("missing pull: %d %s", resp.StatusCode, body)
		}
	}
	if got := len(s.Deployments()); got != 2 {
		t.Errorf("%d deployments", got)
	}
}

// TestDeliveryBodies: the webhook bodies built from fixtures carry the
// fake's state.
func TestDeliveryBodies(t *testing.T) {
	s := New(t, "acme", "shop")
	s.OpenPR(PR{Number: 3, HeadSHA: sha(3)})
	var ev gh.PullRequestEvent
	if err := json.Unmarshal(s.PullRequestEvent("synchronize", 3), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetNumber() != 3 || ev.GetRepo().GetFullName() != "acme/shop" || ev.GetPullRequest().GetHead().GetSHA() != sha(3) || ev.GetAction() != "synchronize" {
		t.Errorf("event = %+v", ev)
	}
	s.SetBranch("main", sha(9))
	var push gh.PushEvent
	if err := json.Unmarshal(s.PushEvent("main", sha(8)), &push); err != nil {
		t.Fatal(err)
	}
	if push.GetRef() != "refs/heads/main" || push.GetAfter() != sha(9) || push.GetRepo().GetFullName() != "acme/shop" {
		t.Errorf("push = %+v", push)
	}
}
