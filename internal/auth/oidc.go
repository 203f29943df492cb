package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCOptions configure sign-in through an OpenID Connect provider.
type OIDCOptions struct {
	// Issuer is the provider's issuer URL; its discovery document is read
	// from <issuer>/.well-known/openid-configuration.
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is this previewd's /signin/oidc/callback, absolute.
	RedirectURL string
	// AllowedDomains, if any, admit only a verified email in one of them.
	AllowedDomains []string
	// AllowedGroups, if any, admit only a member of one of them (the ID
	// token's groups claim).
	AllowedGroups []string
	// Role is what a signed-in user may do (None: Viewer).
	Role Role
	// Secret derives the key of the state cookie.
	Secret []byte
	// HTTPClient talks to the provider (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// OIDC is sign-in through an OpenID Connect provider: the authorization
// code flow with PKCE (S256), a state and a nonce, and the ID token
// verified by go-oidc (signature, issuer, audience, expiry).
type OIDC struct {
	o        OIDCOptions
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	flow     *flow
}

var _ Provider = (*OIDC)(nil)

// NewOIDC reads the provider's discovery document and returns the flow.
func NewOIDC(ctx context.Context, o OIDCOptions) (*OIDC, error) {
	if o.Role == None {
		o.Role = Viewer
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p, err := oidc.NewProvider(httpContext(ctx, o.HTTPClient), o.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery: %w", err)
	}
	return &OIDC{
		o: o,
		oauth: oauth2.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret,
			Endpoint:     p.Endpoint(),
			RedirectURL:  o.RedirectURL,
			Scopes:       []string{oidc.ScopeOpenID, "email", "profile", "groups"},
		},
		verifier: p.Verifier(&oidc.Config{ClientID: o.ClientID, Now: o.Now}),
		flow:     newFlow(KindOIDC, o.Secret, o.Now),
	}, nil
}

// Name is "oidc".
func (*OIDC) Name() string { return KindOIDC }

// Label is the sign-in button's text.
func (*OIDC) Label() string { return "Sign in with single sign-on" }

// Begin redirects to the provider's authorization endpoint.
func (p *OIDC) Begin(w http.ResponseWriter, r *http.Request, next string) error {
	return p.flow.begin(w, r, next, true, func(s pending) string {
		return p.oauth.AuthCodeURL(s.State, oidc.Nonce(s.Nonce), oauth2.S256ChallengeOption(s.Verifier))
	})
}

// idClaims are the claims read from the ID token.
type idClaims struct {
	Email         string   `json:"email"`
	EmailVerified *bool    `json:"email_verified"`
	Groups        []string `json:"groups"`
}

// Finish exchanges the code and verifies the ID token and its nonce, then
// applies allowedDomains and allowedGroups.
func (p *OIDC) Finish(w http.ResponseWriter, r *http.Request) (Principal, string, error) {
	st, code, err := p.flow.finish(w, r)
	if err != nil {
		return Principal{}, "", err
	}
	ctx := httpContext(r.Context(), p.o.HTTPClient)
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return Principal{}, "", errors.Join(ErrCallback, fmt.Errorf("exchanging the code: %w", err))
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Principal{}, "", errors.Join(ErrCallback, errors.New("no id_token in the token response"))
	}
	id, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return Principal{}, "", errors.Join(ErrCallback, fmt.Errorf("verifying the id token: %w", err))
	}
	if id.Nonce == "" || id.Nonce != st.Nonce {
		return Principal{}, "", errors.Join(ErrCallback, errors.New("nonce does not match"))
	}
	var c idClaims
	if err := id.Claims(&c); err != nil {
		return Principal{}, "", errors.Join(ErrCallback, fmt.Errorf("reading the id token's claims: %w", err))
	}
	if err := p.allowed(c); err != nil {
		return Principal{}, "", err
	}
	name := id.Subject
	if c.Email != "" && c.EmailVerified != nil && *c.EmailVerified {
		name = strings.ToLower(c.Email)
	}
	return Principal{Name: KindOIDC + ":" + name, Kind: KindOIDC, Role: p.o.Role}, st.Next, nil
}

func (p *OIDC) allowed(c idClaims) error {
	if len(p.o.AllowedDomains) > 0 {
		if c.EmailVerified == nil || !*c.EmailVerified {
			return errors.Join(ErrNotAllowed, errors.New("the email address is not verified"))
		}
		_, domain, ok := strings.Cut(strings.ToLower(c.Email), "@")
		if !ok || !slices.ContainsFunc(p.o.AllowedDomains, func(d string) bool { return strings.EqualFold(d, domain) }) {
			return errors.Join(ErrNotAllowed, errors.New("the email domain is not allowed"))
		}
	}
	if len(p.o.AllowedGroups) > 0 && !slices.ContainsFunc(c.Groups, func(g string) bool { return slices.Contains(p.o.AllowedGroups, g) }) {
		return errors.Join(ErrNotAllowed, errors.New("not in an allowed group"))
	}
	return nil
}
