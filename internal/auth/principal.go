package auth

import (
	"context"
	"time"
)

// Via says where an action came from, for the audit trail.
type Via string

const (
	ViaAPI       Via = "api"
	ViaDashboard Via = "dashboard"
	ViaPRComment Via = "pr-comment"
)

// Kinds of principal: the prefix of its name.
const (
	KindToken     = "token"
	KindAnonymous = "anonymous"
)

// Anonymous is the name of a principal without credentials.
const Anonymous = "anonymous"

// Principal is who a request acts as.
type Principal struct {
	// Name identifies the principal in the audit trail: "token:ci",
	// "anonymous", "github:octocat", "oidc:alice@example.com".
	Name string `json:"name"`
	// Kind is the name's prefix: token, anonymous, github, oidc.
	Kind string `json:"kind"`
	// Role is what the principal may do.
	Role Role `json:"role"`
	// Session is true when the principal came from a session cookie
	// (signed in on the dashboard) rather than a bearer token or none.
	Session bool `json:"-"`
	// SessionID and SessionExpires identify that session, for signing
	// out (Authenticator.SignOut).
	SessionID      string    `json:"-"`
	SessionExpires time.Time `json:"-"`
}

// Anonymous reports whether p carries no credentials.
func (p Principal) Anonymous() bool { return p.Kind == KindAnonymous || p.Name == "" }

// TokenPrincipal is the principal of the API token named name.
func TokenPrincipal(name string, role Role) Principal {
	return Principal{Name: KindToken + ":" + name, Kind: KindToken, Role: role}
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal ctx carries, or an anonymous one
// without any role.
func FromContext(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		return p
	}
	return Principal{Name: Anonymous, Kind: KindAnonymous}
}
