package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Errors of Authenticate. Each answers 401.
var (
	ErrUnknownToken = errors.New("unknown token")
	ErrBadSession   = errors.New("invalid session")
)

// Options configure an Authenticator.
type Options struct {
	// Tokens are the API tokens; they also sign in on the dashboard.
	Tokens []Token
	// Anonymous is the role of a request without credentials: None
	// (sign-in required), Viewer, or Admin (an open previewd on
	// loopback).
	Anonymous Role
	// Sessions reads dashboard sessions; nil: no sessions.
	Sessions *Sessions
	// Revocations, if set, remembers sessions ended by signing out, so a
	// copy of their cookie is refused until it would have expired.
	Revocations Revocations
	// Providers are the sign-in flows beside the token form (OIDC,
	// GitHub); they need Sessions.
	Providers []Provider
}

// Revocations keeps the sessions ended before their expiry (the store).
type Revocations interface {
	RevokeSession(ctx context.Context, id string, until time.Time) error
	SessionRevoked(ctx context.Context, id string) (bool, error)
}

// ErrRevoked is the reason a signed-out session's cookie is refused.
var ErrRevoked = errors.New("session signed out")

// Authenticator finds a request's principal.
type Authenticator struct {
	tokens    *Tokens
	anonymous Role
	sessions  *Sessions
	revoked   Revocations
	providers []Provider
}

// New returns an authenticator.
func New(o Options) *Authenticator {
	return &Authenticator{tokens: NewTokens(o.Tokens), anonymous: o.Anonymous, sessions: o.Sessions, revoked: o.Revocations, providers: o.Providers}
}

// Sessions returns the session store, nil without one.
func (a *Authenticator) Sessions() *Sessions { return a.sessions }

// Providers returns the sign-in flows beside the token form.
func (a *Authenticator) Providers() []Provider { return a.providers }

// Open reports whether a request without credentials may do everything.
func (a *Authenticator) Open() bool { return a.anonymous == Admin }

// Anonymous is the principal of a request without credentials.
func (a *Authenticator) Anonymous() Principal {
	return Principal{Name: Anonymous, Kind: KindAnonymous, Role: a.anonymous}
}

// SignOut ends p's session (a no-op for a principal without one): its
// cookie is refused from now on, wherever it was copied to.
func (a *Authenticator) SignOut(ctx context.Context, p Principal) error {
	if !p.Session || p.SessionID == "" || a.revoked == nil {
		return nil
	}
	return a.revoked.RevokeSession(ctx, p.SessionID, p.SessionExpires)
}

// CheckToken returns the principal of the API token s (the sign-in form).
func (a *Authenticator) CheckToken(s string) (Principal, bool) { return a.tokens.Check(s) }

// Authenticate returns r's principal: the bearer token's, else the
// session's, else the anonymous one. Credentials that are present but
// wrong are an error (ErrUnknownToken, ErrNotBearer, ErrBadSession
// wrapping the reason), never a fall back to anonymous.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	tok, present, err := BearerToken(r)
	if err != nil {
		return Principal{}, err
	}
	if present {
		p, ok := a.tokens.Check(tok)
		if !ok {
			return Principal{}, ErrUnknownToken
		}
		return p, nil
	}
	if a.sessions != nil {
		sess, err := a.sessions.Read(r)
		switch {
		case errors.Is(err, ErrNoSession):
		case err != nil:
			return Principal{}, errors.Join(ErrBadSession, err)
		default:
			if a.revoked != nil {
				gone, err := a.revoked.SessionRevoked(r.Context(), sess.ID)
				if err != nil {
					return Principal{}, fmt.Errorf("checking the session: %w", err)
				}
				if gone {
					return Principal{}, errors.Join(ErrBadSession, ErrRevoked)
				}
			}
			p := sess.Principal()
			if p.Kind == KindToken {
				// The token's current role: a removed token ends its
				// sessions, a demoted one demotes them.
				name, _ := strings.CutPrefix(p.Name, KindToken+":")
				role, ok := a.tokens.Named(name)
				if !ok {
					return Principal{}, errors.Join(ErrBadSession, ErrUnknownToken)
				}
				p.Role = role
			}
			return p, nil
		}
	}
	return a.Anonymous(), nil
}
