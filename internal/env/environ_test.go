package env

import (
	"slices"
	"strings"
	"testing"
)

// TestEnviron: a command gets the basic variables, the inherited ones, the
// release's and the configured env only when trusted; never previewd's own
// secrets, and no name twice.
func TestEnviron(t *testing.T) {
	base := []string{"PATH=/bin", "HOME=/home/p", "GITHUB_TOKEN=s3cret", "PG_PASSWORD=hunter2", "EXTRA_OK=yes", "LC_TIME=C", "DATABASE_URL=previewd's own", "PATH=/second"}
	rel := Release{Source: Source{Key: "pr-7", Kind: KindPullRequest, Number: 7, SHA: "abc", Branch: "fix", Trusted: true}, URL: "http://pr-7.preview.test",
		Vars: map[string]string{"DATABASE_URL": "sqlite:/x", "STRIPE_KEY": "per-env"}}
	extra := map[string]string{"STRIPE_KEY": "sk_live", "FEATURE": "on"}
	trusted := Environ(base, []string{"EXTRA_OK"}, rel, extra)
	for _, want := range []string{"PATH=/bin", "HOME=/home/p", "EXTRA_OK=yes", "LC_TIME=C", "FEATURE=on", "STRIPE_KEY=per-env", "DATABASE_URL=sqlite:/x",
		"PREVIEW_KEY=pr-7", "PREVIEW_NUMBER=7", "PREVIEW_SHA=abc", "PREVIEW_BRANCH=fix", "PREVIEW_URL=http://pr-7.preview.test", "PREVIEW_PRODUCTION=false"} {
		if !slices.Contains(trusted, want) {
			t.Errorf("trusted environment lacks %s: %q", want, trusted)
		}
	}
	rel.Trusted = false
	untrusted := Environ(base, nil, rel, extra)
	if slices.Contains(untrusted, "FEATURE=on") || slices.Contains(untrusted, "EXTRA_OK=yes") {
		t.Errorf("untrusted environment got the configured env or an uninherited variable: %q", untrusted)
	}
	if !slices.Contains(untrusted, "DATABASE_URL=sqlite:/x") {
		t.Error("an untrusted change lacks its own database")
	}
	for _, e := range [][]string{trusted, untrusted} {
		names := map[string]bool{}
		for _, kv := range e {
			if strings.Contains(kv, "s3cret") || strings.Contains(kv, "hunter2") || strings.Contains(kv, "previewd's own") {
				t.Errorf("previewd's own variable leaked: %s", kv)
			}
			name, _, _ := strings.Cut(kv, "=")
			if names[name] {
				t.Errorf("%s appears twice", name)
			}
			names[name] = true
		}
	}
}

func TestKeySource(t *testing.T) {
	tests := map[string]Source{
		"production": {Key: "production", Kind: KindProduction},
		"pr-7":       {Key: "pr-7", Kind: KindPullRequest, Number: 7},
		"pr-x":       {Key: "pr-x", Kind: KindBranch},
		"feature-a":  {Key: "feature-a", Kind: KindBranch},
	}
	for key, want := range tests {
		if got := KeySource(key); got != want {
			t.Errorf("KeySource(%q) = %+v, want %+v", key, got, want)
		}
	}
}
