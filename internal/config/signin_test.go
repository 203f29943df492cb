package config

import (
	"errors"
	"strings"
	"testing"
)

// TestAuthSignIn: the github and oidc sections read their secrets from
// ${VAR}, need a publicURL, and every bad field is named without
// repeating a secret.
func TestAuthSignIn(t *testing.T) {
	const ghSecret, oidcSecret = "gh-oauth-secret-0123456789", "oidc-secret-0123456789"
	vars := lookup(map[string]string{"GH_SECRET": ghSecret, "OIDC_SECRET": oidcSecret})
	c, err := Parse([]byte(`forge: {git: {url: x}}
auth:
  publicURL: https://previewd.example.com
  github:
    clientID: Iv1.abc
    clientSecret: "${GH_SECRET}"
    allowedOrgs: [acme]
    allowedTeams: [partner/contractors]
    roles: {acme/platform: admin, acme: operator}
  oidc:
    issuer: https://id.example.com
    clientID: previewd
    clientSecret: "${OIDC_SECRET}"
    allowedDomains: [example.com]
    allowedGroups: [engineering]
    role: operator
`), "/x", vars)
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.GitHub.ClientSecret != ghSecret || c.Auth.OIDC.ClientSecret != oidcSecret || c.Auth.GitHub.Roles["acme/platform"] != "admin" ||
		!c.Auth.Configured() || c.CheckExposure() != nil {
		t.Errorf("auth = %+v", c.Auth)
	}
	// Sign-in alone lets people in: no "nobody can get in".
	if _, err := Parse([]byte(`forge: {git: {url: x}}
auth: {publicURL: "http://127.0.0.1:8080", oidc: {issuer: "http://127.0.0.1:5556/dex", clientID: p, clientSecret: "${OIDC_SECRET}"}}`), "/x", vars); err != nil {
		t.Errorf("oidc only, loopback issuer: %v", err)
	}

	tests := map[string]struct {
		yaml string
		want []string
	}{
		"github": {`auth:
  github: {clientSecret: "${GH_SECRET}", url: "ftp://x", roles: {"a/b/c": root}}`, []string{
			"auth.publicURL: required with auth.github or auth.oidc",
			"auth.github.clientID: required",
			`auth.github.url: "ftp://x" is not an absolute http(s) URL`,
			"auth.github.allowedOrgs: required (or allowedTeams)",
			`auth.github.roles: key "a/b/c" is not an org or org/team-slug`,
			`auth.github.roles.a/b/c: unknown value "root"`,
		}},
		"github teams": {`auth:
  publicURL: https://previewd.example.com/
  github: {clientID: x, clientSecret: "${GH_SECRET}", allowedOrgs: [a/b], allowedTeams: [acme]}`, []string{
			`auth.github.allowedOrgs[0]: "a/b" is not an org login`,
			`auth.github.allowedTeams[0]: "acme" is not org/team-slug`,
		}},
		"oidc": {`auth:
  publicURL: "previewd.example.com/x"
  oidc: {issuer: "http://id.example.com", allowedDomains: ["@example.com"], role: root}`, []string{
			`auth.publicURL: "previewd.example.com/x" is not a base URL`,
			`auth.oidc.issuer: "http://id.example.com" is not an https URL`,
			"auth.oidc.clientID: required",
			"auth.oidc.clientSecret: required",
			`auth.oidc.allowedDomains[0]: "@example.com" is not a domain`,
			`auth.oidc.role: unknown value "root"`,
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("forge: {git: {url: x}}\n"+tt.yaml), "/x", vars)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors %q lack %q", err, w)
				}
			}
			if len(es) != len(tt.want) {
				t.Errorf("got %d errors, want %d: %v", len(es), len(tt.want), err)
			}
			if strings.Contains(err.Error(), ghSecret) || strings.Contains(err.Error(), oidcSecret) {
				t.Errorf("errors repeat a secret: %v", err)
			}
		})
	}
}
