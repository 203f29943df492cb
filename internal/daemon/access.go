package daemon

import (
	"context"
	"fmt"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/store"
)

// sessionKeyName is the store secret that signs sessions when the config
// sets no auth.sessionKey.
const sessionKeyName = "session-key"

// openAuth builds the authenticator the config asks for: its tokens, the
// anonymous role (admin without an auth section, which serve allows on
// loopback only) and sessions signed with auth.sessionKey or the store's
// own key.
func openAuth(ctx context.Context, cfg *config.Config, st *store.Store) (*auth.Authenticator, error) {
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
	key := cfg.Auth.SessionKey
	if key == "" {
		if key, err = st.Secret(ctx, sessionKeyName); err != nil {
			return nil, err
		}
	}
	return auth.New(auth.Options{
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
func openPreviews(ctx context.Context, cfg *config.Config, st *store.Store) (*auth.Previews, error) {
	key := cfg.Auth.SessionKey
	if key == "" {
		var err error
		if key, err = st.Secret(ctx, sessionKeyName); err != nil {
			return nil, err
		}
	}
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
	}), nil
}
