package auth

import (
	"errors"
	"net/http"
	"strings"
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
}

// Authenticator finds a request's principal.
type Authenticator struct {
	tokens    *Tokens
	anonymous Role
	sessions  *Sessions
}

// New returns an authenticator.
func New(o Options) *Authenticator {
	return &Authenticator{tokens: NewTokens(o.Tokens), anonymous: o.Anonymous, sessions: o.Sessions}
}

// Sessions returns the session store, nil without one.
func (a *Authenticator) Sessions() *Sessions { return a.sessions }

// Open reports whether a request without credentials may do everything.
func (a *Authenticator) Open() bool { return a.anonymous == Admin }

// Anonymous is the principal of a request without credentials.
func (a *Authenticator) Anonymous() Principal {
	return Principal{Name: Anonymous, Kind: KindAnonymous, Role: a.anonymous}
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
