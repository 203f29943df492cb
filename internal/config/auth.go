package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Auth says who may use previewd's API and dashboard. Without it, and with
// a loopback listen address, everything is open (previewd demo); with a
// listen address reachable from elsewhere, serve refuses to start without
// it (see Config.CheckExposure).
type Auth struct {
	// Tokens are the API tokens: "Authorization: Bearer <token>". The
	// same tokens sign in on the dashboard. Use ${VAR} for each token.
	Tokens []Token `yaml:"tokens"`
	// Anonymous is the role of a request without credentials: none (sign
	// in first), viewer (read without signing in) or admin (no access
	// control at all, on purpose). Default none.
	Anonymous string `yaml:"anonymous"`
	// Metrics is open (anyone may scrape /metrics) or token (a bearer
	// token of any role). Default open.
	Metrics string `yaml:"metrics"`
	// SessionKey signs dashboard session cookies; at least 32
	// characters, from ${VAR}. Default: a random key made once and kept
	// in the store (shared by replicas on a postgres store).
	SessionKey string `yaml:"sessionKey"`
	// SessionTTL is how long a dashboard sign-in lasts. Default 12h.
	SessionTTL Duration `yaml:"sessionTTL"`
	// PublicURL is where browsers reach previewd's dashboard, e.g.
	// https://previewd.example.com; required with github or oidc, whose
	// OAuth redirect URL is <publicURL>/signin/<github|oidc>/callback.
	PublicURL string `yaml:"publicURL"`
	// GitHub signs people in with a GitHub OAuth app.
	GitHub *GitHubSignIn `yaml:"github"`
	// OIDC signs people in with any OpenID Connect provider.
	OIDC *OIDCSignIn `yaml:"oidc"`
}

// GitHubSignIn is sign-in with a GitHub OAuth app (scope read:org).
type GitHubSignIn struct {
	// ClientID and ClientSecret are the OAuth app's; use ${VAR} for the
	// secret. Required.
	ClientID     string `yaml:"clientID"`
	ClientSecret string `yaml:"clientSecret"`
	// URL is GitHub's web address. Default https://github.com; for
	// GitHub Enterprise Server https://HOST.
	URL string `yaml:"url"`
	// APIURL is GitHub's REST API. Default https://api.github.com/, or
	// <url>/api/v3/ with url set.
	APIURL string `yaml:"apiURL"`
	// AllowedOrgs and AllowedTeams ("org/team-slug") admit their members;
	// at least one is required.
	AllowedOrgs  []string `yaml:"allowedOrgs"`
	AllowedTeams []string `yaml:"allowedTeams"`
	// Roles maps an org or "org/team" to viewer, operator or admin; a
	// member gets the strongest role of their orgs and teams, viewer
	// without any.
	Roles map[string]string `yaml:"roles"`
}

// OIDCSignIn is sign-in with an OpenID Connect provider.
type OIDCSignIn struct {
	// Issuer is the provider's issuer URL (https). Required.
	Issuer string `yaml:"issuer"`
	// ClientID and ClientSecret are previewd's client at the provider;
	// use ${VAR} for the secret. Required.
	ClientID     string `yaml:"clientID"`
	ClientSecret string `yaml:"clientSecret"`
	// AllowedDomains, if set, admit only a verified email address in one
	// of them.
	AllowedDomains []string `yaml:"allowedDomains"`
	// AllowedGroups, if set, admit only a member of one of them (the ID
	// token's groups claim).
	AllowedGroups []string `yaml:"allowedGroups"`
	// Role is what a signed-in user may do: viewer, operator or admin.
	// Default viewer.
	Role string `yaml:"role"`
}

// Token is one API token.
type Token struct {
	// Name identifies the token in the audit trail as token:<name>:
	// lower-case letters, digits, '-', '_' and '.'. Required, unique.
	Name string `yaml:"name"`
	// Token is the secret bearer value, at least 16 characters; use
	// ${VAR}. Required, unique.
	Token string `yaml:"token"`
	// Role is viewer (read), operator (also redeploy, sync, ...) or admin
	// (everything, down and delete included).
	Role string `yaml:"role"`
}

// minTokenLen and minSessionKeyLen are the shortest secrets accepted.
const (
	minTokenLen      = 16
	minSessionKeyLen = 32
)

// Configured reports whether the config has an auth section that says
// anything.
func (a Auth) Configured() bool {
	return len(a.Tokens) > 0 || a.Anonymous != "" || a.Metrics != "" || a.SessionKey != "" || a.GitHub != nil || a.OIDC != nil
}

func (a *Auth) setDefaults() {
	if a.SessionTTL.Duration == 0 {
		a.SessionTTL.Duration = 12 * time.Hour
	}
}

// AnonymousRole is the role of a request without credentials: admin when
// there is no auth section (an open previewd, which CheckExposure allows
// on loopback only), else auth.anonymous (default none).
func (c *Config) AnonymousRole() string {
	if !c.Auth.Configured() {
		return "admin"
	}
	if c.Auth.Anonymous == "" {
		return "none"
	}
	return c.Auth.Anonymous
}

// validate names each bad field; it never prints a token or key.
func (a Auth) validate(bad func(string, string, ...any)) {
	names := map[string]int{}
	secrets := map[string]int{}
	for i, t := range a.Tokens {
		f := "auth.tokens[" + strconv.Itoa(i) + "]"
		switch {
		case t.Name == "":
			bad(f+".name", "required: a name for the audit trail (token:<name>)")
		case !validTokenName(t.Name):
			bad(f+".name", "%q is not a valid name; want lower-case letters, digits, '-', '_' or '.'", t.Name)
		default:
			if j, dup := names[t.Name]; dup {
				bad(f+".name", "%q is also auth.tokens[%d]'s name", t.Name, j)
			}
			names[t.Name] = i
		}
		switch {
		case t.Token == "":
			bad(f+".token", "required: the secret, e.g. \"${PREVIEWD_CI_TOKEN}\"")
		case len(t.Token) < minTokenLen:
			bad(f+".token", "too short; want at least %d characters (e.g. openssl rand -hex 32)", minTokenLen)
		default:
			if j, dup := secrets[t.Token]; dup {
				bad(f+".token", "the same secret as auth.tokens[%d]; give each token its own", j)
			}
			secrets[t.Token] = i
		}
		if t.Role != "viewer" && t.Role != "operator" && t.Role != "admin" {
			bad(f+".role", "unknown value %q; want viewer, operator or admin", t.Role)
		}
	}
	switch a.Anonymous {
	case "", "none", "viewer", "admin":
	default:
		bad("auth.anonymous", "unknown value %q; want none, viewer or admin", a.Anonymous)
	}
	switch a.Metrics {
	case "", "open":
	case "token":
		if len(a.Tokens) == 0 {
			bad("auth.metrics", "token needs at least one of auth.tokens")
		}
	default:
		bad("auth.metrics", "unknown value %q; want open or token", a.Metrics)
	}
	if a.SessionKey != "" && len(a.SessionKey) < minSessionKeyLen {
		bad("auth.sessionKey", "too short; want at least %d characters, or leave it out for a generated key", minSessionKeyLen)
	}
	if d := a.SessionTTL.Duration; d < time.Minute || d > 30*24*time.Hour {
		bad("auth.sessionTTL", "%s is out of range; want 1m to 720h", a.SessionTTL)
	}
	if a.Configured() && len(a.Tokens) == 0 && a.GitHub == nil && a.OIDC == nil && (a.Anonymous == "" || a.Anonymous == "none") {
		bad("auth.tokens", "nobody can get in: add a token, github or oidc, or set auth.anonymous to viewer or admin")
	}
	if a.GitHub != nil || a.OIDC != nil {
		if a.PublicURL == "" {
			bad("auth.publicURL", "required with auth.github or auth.oidc: the URL browsers reach previewd at, e.g. https://previewd.example.com")
		} else if u, err := url.Parse(a.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			bad("auth.publicURL", "%q is not a base URL; want e.g. https://previewd.example.com", a.PublicURL)
		}
	}
	if g := a.GitHub; g != nil {
		secrets := func(f, v, what string) {
			if v == "" {
				bad(f, "required: %s", what)
			}
		}
		secrets("auth.github.clientID", g.ClientID, "the OAuth app's client ID")
		secrets("auth.github.clientSecret", g.ClientSecret, "the OAuth app's client secret, e.g. \"${GITHUB_OAUTH_SECRET}\"")
		for _, f := range []struct{ name, v string }{{"auth.github.url", g.URL}, {"auth.github.apiURL", g.APIURL}} {
			if f.v != "" && !absoluteURL(f.v) {
				bad(f.name, "%q is not an absolute http(s) URL", f.v)
			}
		}
		if len(g.AllowedOrgs) == 0 && len(g.AllowedTeams) == 0 {
			bad("auth.github.allowedOrgs", "required (or allowedTeams): without either, anyone with a GitHub account could sign in")
		}
		for i, o := range g.AllowedOrgs {
			if o == "" || strings.Contains(o, "/") {
				bad("auth.github.allowedOrgs["+strconv.Itoa(i)+"]", "%q is not an org login", o)
			}
		}
		for i, t := range g.AllowedTeams {
			if org, team, ok := strings.Cut(t, "/"); !ok || org == "" || team == "" || strings.Contains(team, "/") {
				bad("auth.github.allowedTeams["+strconv.Itoa(i)+"]", "%q is not org/team-slug", t)
			}
		}
		for k, r := range g.Roles {
			if org, team, hasTeam := strings.Cut(k, "/"); org == "" || (hasTeam && (team == "" || strings.Contains(team, "/"))) {
				bad("auth.github.roles", "key %q is not an org or org/team-slug", k)
			}
			if r != "viewer" && r != "operator" && r != "admin" {
				bad("auth.github.roles."+k, "unknown value %q; want viewer, operator or admin", r)
			}
		}
	}
	if o := a.OIDC; o != nil {
		if o.Issuer == "" {
			bad("auth.oidc.issuer", "required: the provider's issuer URL, e.g. https://accounts.google.com")
		} else if u, err := url.Parse(o.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && Loopback(u.Host+portOr(u)))) {
			bad("auth.oidc.issuer", "%q is not an https URL", o.Issuer)
		}
		if o.ClientID == "" {
			bad("auth.oidc.clientID", "required: previewd's client ID at the provider")
		}
		if o.ClientSecret == "" {
			bad("auth.oidc.clientSecret", "required: the client secret, e.g. \"${OIDC_CLIENT_SECRET}\"")
		}
		for i, d := range o.AllowedDomains {
			if d == "" || strings.ContainsAny(d, "@/ ") {
				bad("auth.oidc.allowedDomains["+strconv.Itoa(i)+"]", "%q is not a domain, e.g. example.com", d)
			}
		}
		switch o.Role {
		case "", "viewer", "operator", "admin":
		default:
			bad("auth.oidc.role", "unknown value %q; want viewer, operator or admin", o.Role)
		}
	}
}

func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// portOr is ":port" for Loopback's host:port form, ":0" without one.
func portOr(u *url.URL) string {
	if u.Port() != "" {
		return ""
	}
	return ":0"
}

func validTokenName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return s != ""
}

// Loopback reports whether listen accepts connections from this machine
// only: a loopback IP or "localhost". An empty host (":8080"), 0.0.0.0,
// [::] and any other name are reachable from elsewhere.
func Loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckExposure returns an error naming auth when listen is reachable
// from beyond this machine and no auth section says who may get in.
// serve refuses to start on it and validate reports it.
//
// It also returns an error naming database.postgres.productionURL when
// listen is beyond loopback and production would get the admin role
// (see Config.AdminForProduction), unless allowed on purpose.
func (c *Config) CheckExposure() error {
	var es Errors
	if !c.Auth.Configured() && !Loopback(c.Listen) {
		es = append(es, FieldError{Field: "auth", Msg: fmt.Sprintf("required: listen %q is reachable from other machines and there is no auth section, "+
			"so anyone could list, read and redeploy every environment; add auth.tokens, "+
			"or set auth.anonymous: viewer (or admin) to serve without sign-in on purpose", c.Listen)})
	}
	if e := c.checkAdminForProduction(); e != nil {
		es = append(es, *e)
	}
	if len(es) == 0 {
		return nil
	}
	return es
}
