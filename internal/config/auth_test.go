package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	ciToken = "ci-0123456789abcdef0123456789"
	roToken = "ro-0123456789abcdef0123456789"
)

// TestAuth: tokens come from ${VAR}; every bad field is named, and no
// error message repeats a secret.
func TestAuth(t *testing.T) {
	vars := lookup(map[string]string{"CI_TOKEN": ciToken, "RO_TOKEN": roToken, "SHORT": "abc"})
	c, err := Parse([]byte(`forge: {git: {url: x}}
auth:
  tokens:
    - {name: ci, token: "${CI_TOKEN}", role: admin}
    - {name: grafana, token: "${RO_TOKEN}", role: viewer}
  metrics: token
`), "/x", vars)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Auth.Tokens) != 2 || c.Auth.Tokens[0].Token != ciToken || c.Auth.Tokens[1].Role != "viewer" ||
		c.Auth.SessionTTL.Duration != 12*time.Hour || c.AnonymousRole() != "none" {
		t.Errorf("auth = %+v, anonymous %s", c.Auth, c.AnonymousRole())
	}

	tests := map[string]struct {
		yaml string
		want []string
	}{
		"bad fields": {`auth:
  tokens:
    - {name: "CI bot", token: "${SHORT}", role: root}
    - {token: "${CI_TOKEN}", role: admin}
    - {name: ci2, token: "${CI_TOKEN}", role: viewer}
  anonymous: operator
  metrics: closed
  sessionKey: short
  sessionTTL: 1s`, []string{
			`auth.tokens[0].name: "CI bot" is not a valid name`,
			"auth.tokens[0].token: too short",
			`auth.tokens[0].role: unknown value "root"; want viewer, operator or admin`,
			"auth.tokens[1].name: required",
			"auth.tokens[2].token: the same secret as auth.tokens[1]",
			`auth.anonymous: unknown value "operator"; want none, viewer or admin`,
			`auth.metrics: unknown value "closed"; want open or token`,
			"auth.sessionKey: too short",
			"auth.sessionTTL: 1s is out of range",
		}},
		"duplicate name": {`auth: {tokens: [{name: ci, token: "${CI_TOKEN}", role: admin}, {name: ci, token: "${RO_TOKEN}", role: viewer}]}`,
			[]string{`auth.tokens[1].name: "ci" is also auth.tokens[0]'s name`}},
		"nobody gets in":               {`auth: {sessionKey: "0123456789abcdef0123456789abcdef"}`, []string{"auth.tokens: nobody can get in"}},
		"metrics token without tokens": {`auth: {anonymous: viewer, metrics: token}`, []string{"auth.metrics: token needs at least one of auth.tokens"}},
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
			for _, secret := range []string{ciToken, roToken, "abc\"", "short"} {
				if strings.Contains(err.Error(), secret) && secret != "short" {
					t.Errorf("errors repeat a secret: %v", err)
				}
			}
		})
	}
}

// TestCheckExposure: without an auth section, previewd may listen on
// loopback only; an auth section (tokens or a deliberate anonymous role)
// lifts the refusal, which names auth.
func TestCheckExposure(t *testing.T) {
	tests := map[string]struct {
		listen, auth string
		refused      bool
		anonymous    string
	}{
		"loopback v4":          {"127.0.0.1:8080", "", false, "admin"},
		"loopback v6":          {"[::1]:8080", "", false, "admin"},
		"localhost":            {"localhost:8080", "", false, "admin"},
		"all interfaces":       {":8080", "", true, "admin"},
		"0.0.0.0":              {"0.0.0.0:8080", "", true, "admin"},
		"[::]":                 {"[::]:8080", "", true, "admin"},
		"a name":               {"previewd.internal:8080", "", true, "admin"},
		"a LAN address":        {"192.0.2.10:8080", "", true, "admin"},
		"tokens":               {":8080", `auth: {tokens: [{name: ci, token: "` + ciToken + `", role: admin}]}`, false, "none"},
		"anonymous viewer":     {"0.0.0.0:8080", "auth: {anonymous: viewer}", false, "viewer"},
		"anonymous admin":      {"[::]:8080", "auth: {anonymous: admin}", false, "admin"},
		"tokens and anonymous": {":8080", `auth: {anonymous: viewer, tokens: [{name: ci, token: "` + ciToken + `", role: admin}]}`, false, "viewer"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Parse([]byte("listen: \""+tt.listen+"\"\nforge: {git: {url: x}}\n"+tt.auth), "/x", lookup(nil))
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckExposure()
			if (err != nil) != tt.refused {
				t.Fatalf("CheckExposure() = %v, want refused %v", err, tt.refused)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("refusal %q does not name auth", err)
			}
			if got := c.AnonymousRole(); got != tt.anonymous {
				t.Errorf("AnonymousRole() = %s, want %s", got, tt.anonymous)
			}
		})
	}
}
