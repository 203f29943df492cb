package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/store"
)

// sessionKey is the secret sessions, sign-in states and preview cookies
// are signed with (each purpose with its own derived key): auth.sessionKey,
// or the one kept in the store, shared by every replica.
func sessionKey(ctx context.Context, cfg *config.Config, st *store.Store) (string, error) {
	if cfg.Auth.SessionKey != "" {
		return cfg.Auth.SessionKey, nil
	}
	return st.Secret(ctx, sessionKeyName)
}

// sessionKeyName is the store secret that signs sessions when the config
// sets no auth.sessionKey.
const sessionKeyName = "session-key"

// openAuth builds the authenticator the config asks for: its tokens, the
// anonymous role (admin without an auth section, which serve allows on
// loopback only) and sessions signed with auth.sessionKey or the store's
// own key.
func openAuth(ctx context.Context, cfg *config.Config, st *store.Store, key string) (*auth.Authenticator, error) {
	anon, err := auth.ParseRole(cfg.AnonymousRole())
	if err != nil {
		return nil, fmt.Errorf("auth.anonymous: %w", err)
	}
	var tokens []auth.Token
	for _, t := range cfg.Auth.Tokens {
		role, err := auth.ParseRole(t.Role)
		if err != nil {
			return nil, fmt.Errorf("auth.tokens %s: %w", t.Name, err)
		}
		tokens = append(tokens, auth.Token{Name: t.Name, Secret: t.Token, Role: role})
	}
	providers, err := signInProviders(ctx, cfg.Auth, []byte(key))
	if err != nil {
		return nil, err
	}
	return auth.New(auth.Options{
		Providers: providers,
		Tokens:    tokens,
		Anonymous: anon,
		Sessions:  auth.NewSessions([]byte(key), cfg.Auth.SessionTTL.Duration, nil),
		// Signing out is kept in the store, for every replica.
		Revocations: st,
	}), nil
}

// openPreviews builds the guard of preview hosts (previews.access), its
// cookies and tickets signed with the "preview" key derived from the same
// secret as sessions.
func openPreviews(cfg *config.Config, key string) *auth.Previews {
	access := auth.PreviewAccess(cfg.Previews.Access)
	if access == "" {
		access = auth.PreviewPublic
	}
	return auth.NewPreviews(auth.PreviewOptions{
		Access:            access,
		Password:          cfg.Previews.Password,
		BypassToken:       cfg.Previews.BypassToken,
		ProtectProduction: cfg.Previews.ProtectProduction,
		Secret:            []byte(key),
	})
}

// signInTimeout bounds each call previewd makes to a sign-in provider.
const signInTimeout = 15 * time.Second

// signInProviders builds the sign-in flows of auth.github and auth.oidc,
// their state cookies signed with a key derived from the session key.
// The OIDC provider's discovery document is read now, so a wrong issuer
// stops the start.
func signInProviders(ctx context.Context, a config.Auth, secret []byte) ([]auth.Provider, error) {
	var out []auth.Provider
	base := strings.TrimSuffix(a.PublicURL, "/")
	client := &http.Client{Timeout: signInTimeout}
	if g := a.GitHub; g != nil {
		roles := map[string]auth.Role{}
		for k, v := range g.Roles {
			r, err := auth.ParseRole(v)
			if err != nil {
				return nil, fmt.Errorf("auth.github.roles %s: %w", k, err)
			}
			roles[k] = r
		}
		api := g.APIURL
		if api == "" && g.URL != "" {
			api = strings.TrimSuffix(g.URL, "/") + "/api/v3/"
		}
		p, err := auth.NewGitHub(auth.GitHubOptions{
			ClientID: g.ClientID, ClientSecret: g.ClientSecret, RedirectURL: base + "/signin/github/callback",
			WebURL: g.URL, APIURL: api, AllowedOrgs: g.AllowedOrgs, AllowedTeams: g.AllowedTeams, Roles: roles,
			Secret: secret, HTTPClient: client,
		})
		if err != nil {
			return nil, fmt.Errorf("auth.github: %w", err)
		}
		out = append(out, p)
	}
	if o := a.OIDC; o != nil {
		role, err := auth.ParseRole(o.Role)
		if err != nil {
			return nil, fmt.Errorf("auth.oidc.role: %w", err)
		}
		p, err := auth.NewOIDC(ctx, auth.OIDCOptions{
			Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, RedirectURL: base + "/signin/oidc/callback",
			AllowedDomains: o.AllowedDomains, AllowedGroups: o.AllowedGroups, Role: role,
			Secret: secret, HTTPClient: client,
		})
		if err != nil {
			return nil, fmt.Errorf("auth.oidc: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}
