package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// Token is one configured API token.
type Token struct {
	// Name identifies the token in the audit trail (token:<name>); it is
	// never secret.
	Name string
	// Secret is the bearer value. It is kept only as its SHA-256.
	Secret string
	Role   Role
}

type token struct {
	name string
	sum  [sha256.Size]byte
	role Role
}

// Tokens checks bearer values against the configured tokens. Both sides
// are hashed with SHA-256 and compared with subtle.ConstantTimeCompare,
// every token every time, so neither the length nor the content of a
// secret, nor which token matched, shows in the time taken.
type Tokens struct{ list []token }

// NewTokens returns the checker for ts. It keeps no secret in clear.
func NewTokens(ts []Token) *Tokens {
	t := &Tokens{}
	for _, tk := range ts {
		t.list = append(t.list, token{name: tk.Name, sum: sha256.Sum256([]byte(tk.Secret)), role: tk.Role})
	}
	return t
}

// Check returns the principal of the token whose secret is s.
func (t *Tokens) Check(s string) (Principal, bool) {
	if t == nil || s == "" {
		return Principal{}, false
	}
	sum := sha256.Sum256([]byte(s))
	found := -1
	for i := range t.list {
		if subtle.ConstantTimeCompare(sum[:], t.list[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return TokenPrincipal(t.list[found].name, t.list[found].role), true
}

// Named returns the current role of the token named name, for sessions
// made by signing in with it: a token removed from the config (or given
// another role) takes its sessions with it.
func (t *Tokens) Named(name string) (Role, bool) {
	if t == nil {
		return None, false
	}
	for _, tk := range t.list {
		if tk.name == name {
			return tk.role, true
		}
	}
	return None, false
}

// ErrNotBearer is returned for an Authorization header of another scheme.
var ErrNotBearer = errors.New("authorization header is not a bearer token")

// BearerToken returns the token of r's "Authorization: Bearer <token>"
// header; ok is false without one.
func BearerToken(r *http.Request) (string, bool, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false, nil
	}
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", true, ErrNotBearer
	}
	return strings.TrimSpace(tok), true, nil
}
