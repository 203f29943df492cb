package ghtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v88/github"
)

func (s *Server) routesInit() {
	h := func(pattern string, fn func(http.ResponseWriter, *http.Request)) {
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if rec, ok := w.(*recorder); ok {
				rec.pattern = pattern
			}
			if o := r.PathValue("owner"); o != "" && (!strings.EqualFold(o, s.Owner) || !strings.EqualFold(r.PathValue("repo"), s.Repo)) {
				s.notFound(w)
				return
			}
			if id := r.PathValue("id"); id != "" && id != strconv.FormatInt(s.RepoID, 10) {
				s.notFound(w)
				return
			}
			fn(w, r)
		})
	}
	h("GET /repos/{owner}/{repo}/pulls", s.listPulls)
	h("GET /repositories/{id}/pulls", s.listPulls)
	h("GET /repos/{owner}/{repo}/pulls/{n}", s.getPull)
	h("GET /repos/{owner}/{repo}/branches/{branch...}", s.getBranch)
	h("GET /repos/{owner}/{repo}/issues/{n}/comments", s.listComments)
	h("GET /repositories/{id}/issues/{n}/comments", s.listComments)
	h("POST /repos/{owner}/{repo}/issues/{n}/comments", s.createComment)
	h("PATCH /repos/{owner}/{repo}/issues/comments/{cid}", s.editComment)
	h("GET /repos/{owner}/{repo}/deployments", s.listDeployments)
	h("GET /repositories/{id}/deployments", s.listDeployments)
	h("POST /repos/{owner}/{repo}/deployments", s.createDeployment)
	h("GET /repos/{owner}/{repo}/deployments/{did}/statuses", s.listDeploymentStatuses)
	h("POST /repos/{owner}/{repo}/deployments/{did}/statuses", s.createDeploymentStatus)
	h("POST /repos/{owner}/{repo}/statuses/{sha}", s.createCommitStatus)
	h("GET /repos/{owner}/{repo}/commits/{sha}/status", s.combinedStatus)
	h("GET /repos/{owner}/{repo}/commits/{sha}/check-runs", s.checkRuns)
	h("GET /repos/{owner}/{repo}/collaborators/{user}/permission", s.getPermission)
	h("POST /repos/{owner}/{repo}/issues/comments/{cid}/reactions", s.createReaction)
	h("GET /rate_limit", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, template("rest/rate-limit.json"))
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.notFound(w) })
}

func (s *Server) repoAPI(r *http.Request) string {
	return base(r) + "/repos/" + s.Owner + "/" + s.Repo
}

func (s *Server) unprocessable(w http.ResponseWriter, msg string) {
	_, _, body := mapping("rest/recorded/hub4j/error-404-not-found.mapping.json")
	var m map[string]any
	json.Unmarshal([]byte(body), &m)
	m["message"] = msg
	writeJSON(w, http.StatusUnprocessableEntity, m)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// setRepo changes the identity of a repository object of a fixture.
func setRepo(v any, fullName string, fork bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	owner, name, _ := strings.Cut(fullName, "/")
	m["full_name"], m["name"], m["fork"] = fullName, name, fork
	m["html_url"] = "https://github.com/" + fullName
	m["clone_url"] = "https://github.com/" + fullName + ".git"
	if o, ok := m["owner"].(map[string]any); ok {
		o["login"] = owner
	}
}

// renderPR builds a pull request from the list-item fixture (full=false)
// or the single pull request fixture.
func (s *Server) renderPR(r *http.Request, pr *PR, full bool) map[string]any {
	var m map[string]any
	if full {
		m = object("rest/pull-get.json")
	} else {
		m = template("rest/pulls-list.json").([]any)[0].(map[string]any)
	}
	api := s.repoAPI(r)
	n := strconv.Itoa(pr.Number)
	m["id"] = 10_000_000 + pr.Number
	m["number"] = pr.Number
	m["title"] = pr.Title
	m["state"] = pr.State
	m["draft"] = pr.Draft
	m["url"] = api + "/pulls/" + n
	m["html_url"] = "https://github.com/" + s.Owner + "/" + s.Repo + "/pull/" + n
	m["issue_url"] = api + "/issues/" + n
	m["comments_url"] = api + "/issues/" + n + "/comments"
	m["updated_at"] = stamp(pr.UpdatedAt)
	m["closed_at"], m["merged_at"] = nil, nil
	if pr.State == "closed" {
		m["closed_at"] = stamp(pr.UpdatedAt)
		if pr.Merged {
			m["merged_at"] = stamp(pr.UpdatedAt)
		}
	}
	if full {
		m["merged"] = pr.Merged
	}
	labelTmpl := m["labels"].([]any)[0].(map[string]any)
	labels := make([]any, 0, len(pr.Labels))
	for i, name := range pr.Labels {
		l := clone(labelTmpl).(map[string]any)
		l["id"] = 208045946 + i + 1
		l["name"] = name
		l["url"] = api + "/labels/" + name
		l["default"] = false
		labels = append(labels, l)
	}
	m["labels"] = labels
	headRepo := s.Owner + "/" + s.Repo
	if pr.HeadRepo != "" {
		headRepo = pr.HeadRepo
	}
	head := obj(m, "head")
	head["ref"], head["sha"] = pr.HeadRef, pr.HeadSHA
	headOwner, _, _ := strings.Cut(headRepo, "/")
	head["label"] = headOwner + ":" + pr.HeadRef
	setRepo(head["repo"], headRepo, pr.HeadRepo != "")
	if u, ok := head["user"].(map[string]any); ok {
		u["login"] = headOwner
	}
	if pr.HeadRepoDeleted {
		head["repo"] = nil
	}
	if u, ok := m["user"].(map[string]any); ok {
		u["login"] = headOwner
		if pr.Author != "" {
			u["login"] = pr.Author
		}
	}
	b := obj(m, "base")
	b["ref"] = pr.BaseRef
	b["label"] = s.Owner + ":" + pr.BaseRef
	if sha := s.branches[pr.BaseRef]; sha != "" {
		b["sha"] = sha
	}
	setRepo(b["repo"], s.Owner+"/"+s.Repo, false)
	return m
}

func (s *Server) listPulls(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := base(r) + r.URL.Path + "?" + r.URL.RawQuery
	if c, ok := s.pageCache[key]; ok {
		if c.link != "" {
			w.Header().Set("Link", c.link)
		}
		w.Header().Set("ETag", c.etag)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(c.body)
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "open"
	}
	var prs []*PR
	for _, pr := range s.prs {
		if state == "all" || pr.State == state {
			prs = append(prs, pr)
		}
	}
	sortPRs(prs, q.Get("sort"), q.Get("direction"))
	lo, hi := s.paginate(w, r, len(prs), "pulls")
	items := make([]any, 0, hi-lo)
	for _, pr := range prs[lo:hi] {
		items = append(items, s.renderPR(r, pr, false))
	}
	body, _ := json.Marshal(items)
	tag := etag(body)
	s.pageCache[key] = cachedPage{etag: tag, link: w.Header().Get("Link"), body: body}
	w.Header().Set("ETag", tag)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(body)
}

func (s *Server) getPull(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := strconv.Atoi(r.PathValue("n"))
	pr := s.prs[n]
	if pr == nil {
		s.notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, s.renderPR(r, pr, true))
}

// getBranch answers GET /branches/{branch}. No fixture of this response
// is in testdata, so it is go-github's Branch type, encoded.
func (s *Server) getBranch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.PathValue("branch")
	sha, ok := s.branches[name]
	if !ok {
		s.notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, &gh.Branch{
		Name:      gh.Ptr(name),
		Commit:    &gh.RepositoryCommit{SHA: gh.Ptr(sha), URL: gh.Ptr(s.repoAPI(r) + "/commits/" + sha)},
		Protected: gh.Ptr(false),
	})
}

func (s *Server) renderComment(r *http.Request, n int, c *Comment, tmpl map[string]any) map[string]any {
	m := tmpl
	m["id"] = c.ID
	m["node_id"] = fmt.Sprintf("IC_fake%d", c.ID)
	m["body"] = c.Body
	m["url"] = s.repoAPI(r) + "/issues/comments/" + strconv.FormatInt(c.ID, 10)
	m["html_url"] = fmt.Sprintf("https://github.com/%s/%s/pull/%d#issuecomment-%d", s.Owner, s.Repo, n, c.ID)
	m["issue_url"] = s.repoAPI(r) + "/issues/" + strconv.Itoa(n)
	m["created_at"], m["updated_at"] = stamp(c.CreatedAt), stamp(c.UpdatedAt)
	if u, ok := m["user"].(map[string]any); ok {
		u["login"] = c.User
		if strings.HasSuffix(c.User, "[bot]") {
			u["type"] = "Bot"
		}
	}
	return m
}

func (s *Server) listComments(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := strconv.Atoi(r.PathValue("n"))
	if s.prs[n] == nil {
		s.notFound(w)
		return
	}
	cs := s.comments[n]
	lo, hi := s.paginate(w, r, len(cs), "issues/"+strconv.Itoa(n)+"/comments")
	items := make([]any, 0, hi-lo)
	for _, c := range cs[lo:hi] {
		items = append(items, s.renderComment(r, n, c, template("rest/issue-comments-list.json").([]any)[0].(map[string]any)))
	}
	writeJSON(w, http.StatusOK, items)
}

func (s *Server) createComment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Body string `json:"body"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Body == "" {
		s.unprocessable(w, "Invalid request: body is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := strconv.Atoi(r.PathValue("n"))
	if s.prs[n] == nil {
		s.notFound(w)
		return
	}
	c := s.addComment(n, s.User, req.Body)
	m := s.renderComment(r, n, c, object("rest/issue-comment-create.json"))
	w.Header().Set("Location", m["url"].(string))
	writeJSON(w, http.StatusCreated, m)
}

func (s *Server) editComment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Body string `json:"body"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Body == "" {
		s.unprocessable(w, "Invalid request: body is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _ := strconv.ParseInt(r.PathValue("cid"), 10, 64)
	for n, cs := range s.comments {
		for _, c := range cs {
			if c.ID == id {
				c.Body, c.UpdatedAt = req.Body, s.tick()
				writeJSON(w, http.StatusOK, s.renderComment(r, n, c, object("rest/issue-comment-update.json")))
				return
			}
		}
	}
	s.notFound(w)
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

func (s *Server) renderDeployment(r *http.Request, d *Deployment) map[string]any {
	m := object("rest/deployment-create.json")
	id := strconv.FormatInt(d.ID, 10)
	m["id"], m["sha"], m["ref"] = d.ID, d.SHA, d.Ref
	m["node_id"] = "DE_fake" + id
	m["environment"], m["original_environment"] = d.Environment, d.Environment
	m["description"] = d.Description
	m["transient_environment"], m["production_environment"] = d.Transient, d.Production
	m["url"] = s.repoAPI(r) + "/deployments/" + id
	m["statuses_url"] = s.repoAPI(r) + "/deployments/" + id + "/statuses"
	m["repository_url"] = s.repoAPI(r)
	if c, ok := m["creator"].(map[string]any); ok {
		c["login"] = s.User
	}
	return m
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := r.URL.Query()
	var ds []*Deployment
	for i := len(s.deployments) - 1; i >= 0; i-- { // newest first
		d := s.deployments[i]
		if (q.Get("sha") == "" || q.Get("sha") == d.SHA) && (q.Get("ref") == "" || q.Get("ref") == d.Ref) &&
			(q.Get("environment") == "" || q.Get("environment") == d.Environment) {
			ds = append(ds, d)
		}
	}
	lo, hi := s.paginate(w, r, len(ds), "deployments")
	items := make([]any, 0, hi-lo)
	for _, d := range ds[lo:hi] {
		items = append(items, s.renderDeployment(r, d))
	}
	writeJSON(w, http.StatusOK, items)
}

func (s *Server) createDeployment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ref                   string    `json:"ref"`
		AutoMerge             *bool     `json:"auto_merge"`
		RequiredContexts      *[]string `json:"required_contexts"`
		Environment           string    `json:"environment"`
		Description           string    `json:"description"`
		TransientEnvironment  bool      `json:"transient_environment"`
		ProductionEnvironment *bool     `json:"production_environment"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Ref == "" {
		s.unprocessable(w, "Invalid request: ref is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sha := s.branches[req.Ref]
	if hexSHA.MatchString(req.Ref) {
		sha = req.Ref
	}
	if sha == "" {
		s.unprocessable(w, "No ref found for: "+req.Ref)
		return
	}
	env := req.Environment
	if env == "" {
		env = "production"
	}
	s.nextID++
	d := &Deployment{
		ID: s.nextID, SHA: sha, Ref: req.Ref, Environment: env, Description: req.Description,
		Transient: req.TransientEnvironment, Production: env == "production",
		AutoMerge: req.AutoMerge == nil || *req.AutoMerge,
	}
	if req.ProductionEnvironment != nil {
		d.Production = *req.ProductionEnvironment
	}
	if req.RequiredContexts != nil {
		d.RequiredContexts, d.RequiredContextsWasSet = *req.RequiredContexts, true
	}
	s.deployments = append(s.deployments, d)
	m := s.renderDeployment(r, d)
	w.Header().Set("Location", m["url"].(string))
	writeJSON(w, http.StatusCreated, m)
}

func (s *Server) deployment(r *http.Request) *Deployment {
	id, _ := strconv.ParseInt(r.PathValue("did"), 10, 64)
	for _, d := range s.deployments {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (s *Server) renderDeploymentStatus(r *http.Request, d *Deployment, st DeploymentStatus) map[string]any {
	m := object("rest/deployment-status-create.json")
	m["id"], m["state"], m["description"] = st.ID, st.State, st.Description
	m["node_id"] = fmt.Sprintf("DES_fake%d", st.ID)
	m["environment"] = d.Environment
	m["environment_url"], m["log_url"], m["target_url"] = st.EnvironmentURL, st.LogURL, st.LogURL
	m["deployment_url"] = s.repoAPI(r) + "/deployments/" + strconv.FormatInt(d.ID, 10)
	m["url"] = m["deployment_url"].(string) + "/statuses/" + strconv.FormatInt(st.ID, 10)
	m["repository_url"] = s.repoAPI(r)
	return m
}

func (s *Server) listDeploymentStatuses(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deployment(r)
	if d == nil {
		s.notFound(w)
		return
	}
	lo, hi := s.paginate(w, r, len(d.Statuses), "deployments/"+r.PathValue("did")+"/statuses")
	items := []any{}
	for i := len(d.Statuses) - 1 - lo; i >= len(d.Statuses)-hi; i-- { // newest first
		items = append(items, s.renderDeploymentStatus(r, d, d.Statuses[i]))
	}
	writeJSON(w, http.StatusOK, items)
}

var deploymentStates = map[string]bool{"error": true, "failure": true, "inactive": true, "in_progress": true, "queued": true, "pending": true, "success": true}

func (s *Server) createDeploymentStatus(w http.ResponseWriter, r *http.Request) {
	var req struct {
		State          string `json:"state"`
		LogURL         string `json:"log_url"`
		TargetURL      string `json:"target_url"`
		Description    string `json:"description"`
		EnvironmentURL string `json:"environment_url"`
		AutoInactive   *bool  `json:"auto_inactive"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !deploymentStates[req.State] {
		s.unprocessable(w, "Invalid request: state")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deployment(r)
	if d == nil {
		s.notFound(w)
		return
	}
	if req.LogURL == "" {
		req.LogURL = req.TargetURL
	}
	s.nextID++
	st := DeploymentStatus{ID: s.nextID, State: req.State, EnvironmentURL: req.EnvironmentURL, LogURL: req.LogURL, Description: req.Description}
	d.Statuses = append(d.Statuses, st)
	// As GitHub does: a success marks the earlier successful deployments
	// of a non-transient, non-production environment inactive.
	if req.State == "success" && (req.AutoInactive == nil || *req.AutoInactive) {
		for _, o := range s.deployments {
			if o != d && o.Environment == d.Environment && !o.Transient && !o.Production && o.State() == "success" {
				s.nextID++
				o.Statuses = append(o.Statuses, DeploymentStatus{ID: s.nextID, State: "inactive"})
			}
		}
	}
	writeJSON(w, http.StatusCreated, s.renderDeploymentStatus(r, d, st))
}

func (s *Server) createCommitStatus(w http.ResponseWriter, r *http.Request) {
	var req CommitStatus
	var body struct {
		State       string `json:"state"`
		Context     string `json:"context"`
		TargetURL   string `json:"target_url"`
		Description string `json:"description"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		s.unprocessable(w, "Invalid request")
		return
	}
	switch body.State {
	case "error", "failure", "pending", "success":
	default:
		s.unprocessable(w, "Invalid request: state")
		return
	}
	if body.Context == "" {
		body.Context = "default"
	}
	req = CommitStatus{State: body.State, Context: body.Context, TargetURL: body.TargetURL, Description: body.Description}
	s.mu.Lock()
	defer s.mu.Unlock()
	sha := r.PathValue("sha")
	s.statuses[sha] = append(s.statuses[sha], req)
	s.nextID++
	m := object("rest/commit-status-create.json")
	m["id"], m["state"], m["context"], m["target_url"], m["description"] = s.nextID, req.State, req.Context, req.TargetURL, req.Description
	m["url"] = s.repoAPI(r) + "/statuses/" + sha
	writeJSON(w, http.StatusCreated, m)
}

// combinedStatus answers from the recorded combined status of the
// octokit create-status scenario, with this commit's statuses.
func (s *Server) combinedStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sha := r.PathValue("sha")
	raw := template("rest/recorded/octokit-fixtures/create-status.raw-fixture.json").([]any)
	var m map[string]any
	for _, e := range raw {
		e := e.(map[string]any)
		if strings.HasSuffix(e["path"].(string), "/status") && e["method"] == "get" {
			m = e["response"].(map[string]any)
		}
	}
	tmpl := m["statuses"].([]any)[0].(map[string]any)
	latest := map[string]CommitStatus{}
	var order []string
	for _, st := range s.statuses[sha] {
		if _, seen := latest[st.Context]; !seen {
			order = append(order, st.Context)
		}
		latest[st.Context] = st
	}
	statuses := []any{}
	state := "success"
	if len(order) == 0 {
		state = "pending"
	}
	for _, c := range order {
		st := latest[c]
		x := clone(tmpl).(map[string]any)
		x["state"], x["context"], x["description"], x["target_url"] = st.State, st.Context, st.Description, st.TargetURL
		x["url"] = s.repoAPI(r) + "/statuses/" + sha
		statuses = append(statuses, x)
		switch {
		case st.State == "failure" || st.State == "error":
			state = "failure"
		case st.State == "pending" && state != "failure":
			state = "pending"
		}
	}
	m["state"], m["sha"], m["statuses"], m["total_count"] = state, sha, statuses, len(statuses)
	setRepo(m["repository"], s.Owner+"/"+s.Repo, false)
	writeJSON(w, http.StatusOK, m)
}

// checkRuns answers GET /commits/{sha}/check-runs. No fixture of this
// response is in testdata, so it is go-github's ListCheckRunsResults.
func (s *Server) checkRuns(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sha := r.PathValue("sha")
	runs := s.checks[sha]
	lo, hi := s.paginate(w, r, len(runs), "commits/"+sha+"/check-runs")
	res := &gh.ListCheckRunsResults{Total: gh.Ptr(len(runs))}
	for _, c := range runs[lo:hi] {
		cr := &gh.CheckRun{ID: gh.Ptr(c.ID), Name: gh.Ptr(c.Name), HeadSHA: gh.Ptr(sha), Status: gh.Ptr(c.Status)}
		if c.Conclusion != "" {
			cr.Conclusion = gh.Ptr(c.Conclusion)
		}
		res.CheckRuns = append(res.CheckRuns, cr)
	}
	writeJSON(w, http.StatusOK, res)
}
