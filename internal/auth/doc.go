// Package auth decides who a request comes from and what they may do:
// API tokens with roles (viewer < operator < admin), the principal a
// request acts as, signed session cookies for the dashboard, and the
// signer they are built on (for later sign-in flows such as OAuth state),
// and Previews, the guard of protected preview hosts (a password, a
// bypass token, one-time sign-in tickets, and a cookie bound to one
// preview's key). It imports nothing of previewd, so every part can
// use its types; the HTTP routes that enforce it live in internal/server.
//
// A Principal is named by where it comes from: "token:<name>" for an API
// token, "anonymous" for a request without credentials, "github:<login>"
// and "oidc:<verified email or subject>" for the sign-in Providers
// (GitHub OAuth and OpenID Connect, in github.go and oidc.go), whose
// shared state handling (a signed, one-time state/nonce/PKCE cookie) is
// in signin.go. The server issues their sessions with Sessions.Issue.
// Package oidctest is an in-process OIDC provider for tests.
package auth
