package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	gh "github.com/google/go-github/v88/github"
	"golang.org/x/oauth2"
	ghoauth "golang.org/x/oauth2/github"
)

// GitHubOptions configure sign-in with GitHub (an OAuth app).
type GitHubOptions struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is this previewd's /signin/github/callback, absolute.
	RedirectURL string
	// WebURL is GitHub's web address, where the OAuth endpoints live
	// (empty: github.com; set it for GitHub Enterprise Server).
	WebURL string
	// APIURL is GitHub's REST API (empty: api.github.com; on GitHub
	// Enterprise Server <host>/api/v3/).
	APIURL string
	// AllowedOrgs and AllowedTeams ("org/team-slug") admit a member of
	// any of them, case-insensitively.
	AllowedOrgs  []string
	AllowedTeams []string
	// Roles maps an org or "org/team" to a role; a member gets the
	// strongest role of their orgs and teams, Viewer without any.
	Roles map[string]Role
	// Secret derives the key of the state cookie.
	Secret []byte
	// HTTPClient talks to GitHub (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// GitHub is sign-in with a GitHub OAuth app: the code flow with state and
// PKCE, then the user and their org and team memberships read from the
// REST API with the user's token.
type GitHub struct {
	o     GitHubOptions
	oauth oauth2.Config
	flow  *flow
}

var _ Provider = (*GitHub)(nil)

// maxMembershipPages bounds the org and team listings (100 a page).
const maxMembershipPages = 10

// NewGitHub returns the GitHub sign-in flow.
func NewGitHub(o GitHubOptions) (*GitHub, error) {
	ep := ghoauth.Endpoint
	if o.WebURL != "" {
		u, err := url.Parse(strings.TrimSuffix(o.WebURL, "/"))
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("github web URL %q: want an absolute URL", o.WebURL)
		}
		ep = oauth2.Endpoint{AuthURL: u.String() + "/login/oauth/authorize", TokenURL: u.String() + "/login/oauth/access_token"}
	}
	if o.APIURL != "" {
		if u, err := url.Parse(o.APIURL); err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("github API URL %q: want an absolute URL", o.APIURL)
		}
	}
	return &GitHub{
		o: o,
		oauth: oauth2.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret,
			Endpoint:     ep,
			RedirectURL:  o.RedirectURL,
			// read:org lists private org and team memberships.
			Scopes: []string{"read:org"},
		},
		flow: newFlow(KindGitHub, o.Secret, o.Now),
	}, nil
}

// Name is "github".
func (*GitHub) Name() string { return KindGitHub }

// Label is the sign-in button's text.
func (*GitHub) Label() string { return "Sign in with GitHub" }

// Begin redirects to GitHub's authorize page.
func (g *GitHub) Begin(w http.ResponseWriter, r *http.Request, next string) error {
	return g.flow.begin(w, r, next, false, func(s pending) string {
		return g.oauth.AuthCodeURL(s.State, oauth2.S256ChallengeOption(s.Verifier))
	})
}

// Finish exchanges the code, reads the user and their memberships and
// admits a member of an allowed org or team.
func (g *GitHub) Finish(w http.ResponseWriter, r *http.Request) (Principal, string, error) {
	st, code, err := g.flow.finish(w, r)
	if err != nil {
		return Principal{}, "", err
	}
	ctx := httpContext(r.Context(), g.o.HTTPClient)
	tok, err := g.oauth.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return Principal{}, "", errors.Join(ErrCallback, fmt.Errorf("exchanging the code: %w", err))
	}
	client, err := g.client(ctx, tok)
	if err != nil {
		return Principal{}, "", err
	}
	user, _, err := client.Users.Get(r.Context(), "")
	if err != nil {
		return Principal{}, "", errors.Join(ErrCallback, fmt.Errorf("reading the user: %w", err))
	}
	login := strings.ToLower(user.GetLogin())
	if login == "" {
		return Principal{}, "", errors.Join(ErrCallback, errors.New("the user has no login"))
	}
	groups, err := g.memberships(r.Context(), client)
	if err != nil {
		return Principal{}, "", errors.Join(ErrCallback, err)
	}
	role, ok := g.admit(groups)
	if !ok {
		return Principal{}, "", errors.Join(ErrNotAllowed, fmt.Errorf("github user %s is in none of the allowed orgs or teams", login))
	}
	return Principal{Name: KindGitHub + ":" + login, Kind: KindGitHub, Role: role}, st.Next, nil
}

func (g *GitHub) client(ctx context.Context, tok *oauth2.Token) (*gh.Client, error) {
	opts := []gh.ClientOptionsFunc{gh.WithHTTPClient(g.oauth.Client(ctx, tok)), gh.WithUserAgent("previewd"), gh.WithDisableRateLimitCheck()}
	if g.o.APIURL != "" {
		// The URL as given (no /api/v3/ appended): GHES users give it.
		u := strings.TrimSuffix(g.o.APIURL, "/") + "/"
		opts = append(opts, gh.WithURLs(&u, &u))
	}
	c, err := gh.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("github client: %w", err)
	}
	return c, nil
}

// memberships lists the user's orgs ("acme") and teams ("acme/platform"),
// lower-cased.
func (g *GitHub) memberships(ctx context.Context, c *gh.Client) ([]string, error) {
	var out []string
	opts := &gh.ListOptions{PerPage: 100}
	for range maxMembershipPages {
		orgs, resp, err := c.Organizations.List(ctx, "", opts)
		if err != nil {
			return nil, fmt.Errorf("listing the user's orgs: %w", err)
		}
		for _, o := range orgs {
			out = append(out, strings.ToLower(o.GetLogin()))
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	opts = &gh.ListOptions{PerPage: 100}
	for range maxMembershipPages {
		teams, resp, err := c.Teams.ListUserTeams(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing the user's teams: %w", err)
		}
		for _, t := range teams {
			org := strings.ToLower(t.GetOrganization().GetLogin())
			out = append(out, org, org+"/"+strings.ToLower(t.GetSlug()))
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// admit returns the role of a user in groups, false when none is allowed.
func (g *GitHub) admit(groups []string) (Role, bool) {
	in := func(list []string) bool {
		return slices.ContainsFunc(list, func(a string) bool { return slices.Contains(groups, strings.ToLower(a)) })
	}
	if !in(g.o.AllowedOrgs) && !in(g.o.AllowedTeams) {
		return None, false
	}
	role := Viewer
	for k, r := range g.o.Roles {
		if slices.Contains(groups, strings.ToLower(k)) && r > role {
			role = r
		}
	}
	return role, true
}
