package config

import (
	"fmt"
	"net"
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
	return len(a.Tokens) > 0 || a.Anonymous != "" || a.Metrics != "" || a.SessionKey != ""
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
	if a.Configured() && len(a.Tokens) == 0 && (a.Anonymous == "" || a.Anonymous == "none") {
		bad("auth.tokens", "nobody can get in: add a token, or set auth.anonymous to viewer or admin")
	}
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
func (c *Config) CheckExposure() error {
	if c.Auth.Configured() || Loopback(c.Listen) {
		return nil
	}
	return Errors{{Field: "auth", Msg: fmt.Sprintf("required: listen %q is reachable from other machines and there is no auth section, "+
		"so anyone could list, read and redeploy every environment; add auth.tokens, "+
		"or set auth.anonymous: viewer (or admin) to serve without sign-in on purpose", c.Listen)}}
}
