package ghtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"

	gh "github.com/google/go-github/v88/github"
)

// SetPermission sets user's permission on the repository: admin,
// maintain, write, triage, read or none. Users not set have read, as
// anyone has on a public repository.
func (s *Server) SetPermission(user, permission string) {
	s.mu.Lock()
	s.permissions[strings.ToLower(user)] = permission
	s.mu.Unlock()
}

// Reactions returns the contents of the reactions on issue comment id,
// oldest first.
func (s *Server) Reactions(id int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reactions[id]...)
}

// getPermission answers GET /collaborators/{user}/permission. No fixture
// of this response is in testdata: the body is go-github's
// RepositoryPermissionLevel, encoded. role_name is the permission's role
// (write is "write", read is "read"), as GitHub documents for the
// built-in roles.
func (s *Server) getPermission(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	user := r.PathValue("user")
	p := s.permissions[strings.ToLower(user)]
	if p == "" {
		p = "read"
	}
	role := p
	writeJSON(w, http.StatusOK, &gh.RepositoryPermissionLevel{
		Permission: gh.Ptr(p),
		RoleName:   gh.Ptr(role),
		User:       &gh.User{Login: gh.Ptr(user), Type: gh.Ptr("User")},
	})
}

// createReaction answers POST /issues/comments/{cid}/reactions. No
// fixture of this response is in testdata: the body is go-github's
// Reaction, encoded. A reaction already made by the same user is answered
// 200, as GitHub does.
func (s *Server) createReaction(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Content string `json:"content"`
	}
	valid := map[string]bool{"+1": true, "-1": true, "laugh": true, "confused": true, "heart": true, "hooray": true, "rocket": true, "eyes": true}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !valid[req.Content] {
		s.unprocessable(w, "Validation Failed")
		return
	}
	cid, _ := strconv.ParseInt(r.PathValue("cid"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hasComment(cid) {
		s.notFound(w)
		return
	}
	status := http.StatusCreated
	for _, c := range s.reactions[cid] {
		if c == req.Content {
			status = http.StatusOK
		}
	}
	if status == http.StatusCreated {
		s.reactions[cid] = append(s.reactions[cid], req.Content)
	}
	s.nextID++
	writeJSON(w, status, &gh.Reaction{ID: gh.Ptr(s.nextID), User: &gh.User{Login: gh.Ptr(s.User), Type: gh.Ptr("Bot")}, Content: gh.Ptr(req.Content)})
}

func (s *Server) hasComment(id int64) bool {
	for _, cs := range s.comments {
		for _, c := range cs {
			if c.ID == id {
				return true
			}
		}
	}
	return false
}

// IssueCommentEvent returns the body of an issue_comment "created"
// delivery for comment id on pull request n as both are now: the fixture
// webhooks/issue_comment.created.json with the issue's number, title,
// state and pull_request links (go-github's PullRequestLinks, the field
// GitHub adds to the issue of a pull request), the comment's id, body and
// user (type Bot for a login ending in [bot]), and the repository made
// this one.
func (s *Server) IssueCommentEvent(n int, id int64) []byte {
	m := object("webhooks/issue_comment.created.json")
	s.mu.Lock()
	pr := s.prs[n]
	var c *Comment
	for _, x := range s.comments[n] {
		if x.ID == id {
			c = x
		}
	}
	s.mu.Unlock()
	if pr == nil || c == nil {
		panic(fmt.Sprintf("ghtest: no comment %d on pull request %d", id, n))
	}
	r := httptest.NewRequest(http.MethodGet, s.URL, nil)
	api := s.repoAPI(r)
	issue := obj(m, "issue")
	issue["number"], issue["title"], issue["state"] = n, pr.Title, pr.State
	issue["url"] = fmt.Sprintf("%s/issues/%d", api, n)
	issue["html_url"] = fmt.Sprintf("https://github.com/%s/%s/pull/%d", s.Owner, s.Repo, n)
	links, _ := json.Marshal(&gh.PullRequestLinks{
		URL:      gh.Ptr(fmt.Sprintf("%s/pulls/%d", api, n)),
		HTMLURL:  gh.Ptr(fmt.Sprintf("https://github.com/%s/%s/pull/%d", s.Owner, s.Repo, n)),
		DiffURL:  gh.Ptr(fmt.Sprintf("https://github.com/%s/%s/pull/%d.diff", s.Owner, s.Repo, n)),
		PatchURL: gh.Ptr(fmt.Sprintf("https://github.com/%s/%s/pull/%d.patch", s.Owner, s.Repo, n)),
	})
	var pl any
	json.Unmarshal(links, &pl)
	issue["pull_request"] = pl
	cm := obj(m, "comment")
	cm["id"], cm["body"] = c.ID, c.Body
	cm["url"] = fmt.Sprintf("%s/issues/comments/%d", api, c.ID)
	typ := "User"
	if strings.HasSuffix(c.User, "[bot]") {
		typ = "Bot"
	}
	for _, u := range []map[string]any{obj(cm, "user"), obj(m, "sender")} {
		u["login"], u["type"] = c.User, typ
	}
	setRepo(m["repository"], s.Owner+"/"+s.Repo, false)
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}
