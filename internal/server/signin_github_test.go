package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/previewd/previewd/internal/auth"
)

// fakeGitHub is GitHub's OAuth web flow and the three REST endpoints the
// sign-in reads, answering in the shapes of GitHub's documentation
// ("Authorizing OAuth apps", "Get the authenticated user", "List
// organizations for the authenticated user", "List teams for the
// authenticated user"), trimmed to the fields that matter.
type fakeGitHub struct {
	*httptest.Server
	mu    sync.Mutex
	login string
	orgs  []string
	teams []string // org/slug
	codes map[string]string
}

const ghAccessToken = "gho_16C7e42F292c6912E7710c838347Ae178B4a"

func newFakeGitHub(t *testing.T) *fakeGitHub {
	g := &fakeGitHub{codes: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != "Iv1.gh-client" || q.Get("code_challenge_method") != "S256" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		code := fmt.Sprintf("code-%d", len(g.codes))
		g.codes[code] = q.Get("code_challenge")
		g.mu.Unlock()
		u, _ := url.Parse(q.Get("redirect_uri"))
		u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		g.mu.Lock()
		_, found := g.codes[r.PostForm.Get("code")]
		delete(g.codes, r.PostForm.Get("code"))
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if id != "Iv1.gh-client" || secret != "gh-client-secret-0123" || !found || r.PostForm.Get("code_verifier") == "" {
			// GitHub answers 200 with an error body.
			fmt.Fprint(w, `{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"}`)
			return
		}
		fmt.Fprintf(w, `{"access_token":%q,"scope":"read:org","token_type":"bearer"}`, ghAccessToken)
	})
	api := func(h func(w http.ResponseWriter)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+ghAccessToken {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"message":"Requires authentication","documentation_url":"https://docs.github.com/rest/users/users#get-the-authenticated-user","status":"401"}`)
				return
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			g.mu.Lock()
			defer g.mu.Unlock()
			h(w)
		}
	}
	mux.HandleFunc("GET /api/v3/user", api(func(w http.ResponseWriter) {
		fmt.Fprintf(w, `{"login":%q,"id":583231,"node_id":"MDQ6VXNlcjU4MzIzMQ==","type":"User","site_admin":false,"name":"The Octocat","email":null}`, g.login)
	}))
	mux.HandleFunc("GET /api/v3/user/orgs", api(func(w http.ResponseWriter) {
		var out []map[string]any
		for i, o := range g.orgs {
			out = append(out, map[string]any{"login": o, "id": 9919 + i, "node_id": "MDEyOk9yZ2FuaXphdGlvbjk5MTk=", "url": "https://api.github.com/orgs/" + o, "description": ""})
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	mux.HandleFunc("GET /api/v3/user/teams", api(func(w http.ResponseWriter) {
		out := []map[string]any{}
		for i, t := range g.teams {
			org, slug, _ := strings.Cut(t, "/")
			out = append(out, map[string]any{"id": 1 + i, "node_id": "MDQ6VGVhbTE=", "name": strings.ToUpper(slug[:1]) + slug[1:], "slug": slug,
				"permission": "pull", "privacy": "closed", "organization": map[string]any{"login": org, "id": 9919, "node_id": "MDEyOk9yZ2FuaXphdGlvbjk5MTk="}})
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	g.Server = httptest.NewServer(mux)
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGitHub) set(login string, orgs, teams []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.login, g.orgs, g.teams = login, orgs, teams
}

func githubFixture(t *testing.T) (*signinFixture, *fakeGitHub) {
	gh := newFakeGitHub(t)
	f := newSigninFixture(t, func(base string) []auth.Provider {
		p, err := auth.NewGitHub(auth.GitHubOptions{
			ClientID: "Iv1.gh-client", ClientSecret: "gh-client-secret-0123", RedirectURL: base + "/signin/github/callback",
			WebURL: gh.URL, APIURL: gh.URL + "/api/v3/",
			AllowedOrgs: []string{"acme"}, AllowedTeams: []string{"partner/contractors"},
			Roles:  map[string]auth.Role{"acme/platform": auth.Admin, "acme/dev": auth.Operator},
			Secret: []byte(sessionSecret),
		})
		if err != nil {
			t.Fatal(err)
		}
		return []auth.Provider{p}
	})
	return f, gh
}

// TestGitHubSignIn: a member of an allowed org or team signs in with the
// strongest role the map gives their teams (viewer without one); anyone
// else is refused with a page saying so; a bad state is 401; none of the
// refused get a session.
func TestGitHubSignIn(t *testing.T) {
	f, gh := githubFixture(t)
	if page := body(t, f.do(t, "/signin")); !strings.Contains(page, `id="signin-github"`) {
		t.Errorf("sign-in page lacks the GitHub button:\n%s", page)
	}
	cases := []struct {
		name, login string
		orgs, teams []string
		want        int
		who, role   string
	}{
		{"team admin", "Octocat", []string{"acme"}, []string{"acme/platform", "acme/dev"}, 303, "github:octocat", "admin"},
		{"team operator", "dev1", []string{"acme"}, []string{"acme/dev"}, 303, "github:dev1", "operator"},
		{"org member", "plain", []string{"acme"}, nil, 303, "github:plain", "viewer"},
		{"allowed team only", "contractor", nil, []string{"partner/contractors"}, 303, "github:contractor", "viewer"},
		{"other team of a foreign org", "outsider", []string{"partner"}, []string{"partner/sales"}, 403, auth.Anonymous, ""},
		{"no org", "stranger", nil, nil, 403, auth.Anonymous, ""},
	}
	var admitted []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gh.set(tc.login, tc.orgs, tc.teams)
			c := browserClient(t)
			resp, err := c.Get(f.start(c, "github", "/environments/pr-3").String())
			if err != nil {
				t.Fatal(err)
			}
			page := body(t, resp)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("callback = %d, want %d:\n%s", resp.StatusCode, tc.want, page)
			}
			if tc.want == 403 && !strings.Contains(page, "does not let your account in") {
				t.Errorf("refusal page does not say why:\n%s", page)
			}
			if name, role := f.whoami(c); name != tc.who || (tc.role != "" && role != tc.role) {
				t.Errorf("signed in as %q (%s), want %q (%s)", name, role, tc.who, tc.role)
			}
			if tc.want == 303 {
				admitted = append(admitted, tc.who+" via dashboard")
			}
		})
	}
	// A bad state: 401, no session, nothing exchanged.
	gh.set("octocat", []string{"acme"}, []string{"acme/platform"})
	c := browserClient(t)
	cb := f.start(c, "github", "/")
	q := cb.Query()
	q.Set("state", "forged")
	cb.RawQuery = q.Encode()
	if resp := get(t, c, cb.String()); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bad state = %d, want 401", resp.StatusCode)
	}
	if hasSession(c, f.srv.URL) {
		t.Errorf("bad state got a session")
	}
	got := f.signIns()
	if len(got) != len(admitted) {
		t.Errorf("audit sign-ins = %q, want %q (newest first)", got, admitted)
	}
	if strings.Contains(f.log.String(), ghAccessToken) || strings.Contains(f.log.String(), "gh-client-secret") {
		t.Errorf("a GitHub secret reached the log")
	}
}
