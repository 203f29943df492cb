package config

import (
	"strings"
	"testing"
)

// TestPreviewsAccess: the previews access keys parse from ${VAR}; a
// password mode needs a password of 12 characters, signin a sign-in
// method and previewd's address; no error repeats a secret.
func TestPreviewsAccess(t *testing.T) {
	vars := lookup(map[string]string{"PW": "a-long-password!", "SHORT": "short-pw", "BYPASS": "bypass-0123456789abcdef", "CI_TOKEN": ciToken})
	c, err := Parse([]byte(`forge: {git: {url: x}}
previews:
  access: password
  password: "${PW}"
  bypassToken: "${BYPASS}"
  protectProduction: true
`), "/x", vars)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Previews; p.Access != "password" || p.Password != "a-long-password!" || p.BypassToken != "bypass-0123456789abcdef" || !p.ProtectProduction {
		t.Fatalf("previews = %+v", p)
	}
	c, err = Parse([]byte(`forge: {git: {url: x}}
auth: {tokens: [{name: ci, token: "${CI_TOKEN}", role: admin}]}
previews: {access: signin, signinURL: "https://previewd.example.com"}
`), "/x", vars)
	if err != nil || c.SigninURL() != "https://previewd.example.com" {
		t.Fatalf("signin: %v, %q", err, c.SigninURL())
	}

	for name, tc := range map[string]struct{ yaml, want string }{
		"no password":     {"previews: {access: password}", "previews.password: access password needs a password of at least 12"},
		"short password":  {`previews: {access: password, password: "${SHORT}"}`, "previews.password: access password needs a password of at least 12"},
		"signin, no auth": {`previews: {access: signin, signinURL: "https://p.example.com"}`, "previews.access: signin needs a sign-in method"},
		"signin, no URL": {`auth: {tokens: [{name: ci, token: "${CI_TOKEN}", role: admin}]}
previews: {access: signin}`, "previews.signinURL: access signin needs previewd's address"},
		"unknown access": {"previews: {access: open}", `previews.access: unknown value "open"; want public, password or signin`},
		"short bypass":   {`previews: {bypassToken: "${SHORT}"}`, "previews.bypassToken: too short"},
	} {
		_, err := Parse([]byte("forge: {git: {url: x}}\n"+tc.yaml+"\n"), "/x", vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "short-pw") {
			t.Errorf("%s: the error repeats the secret: %v", name, err)
		}
	}
}
