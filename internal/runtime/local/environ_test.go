package local

import (
	"slices"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

// TestEnviron: apps get the basic variables, the release's, PORT and HOST, never
// previewd's own secrets, and the configured env only when trusted.
func TestEnviron(t *testing.T) {
	t.Setenv("GITHUB_TOKEN", "s3cret")
	t.Setenv("PG_PASSWORD", "hunter2")
	t.Setenv("EXTRA_OK", "yes")
	t.Setenv("LC_TIME", "C")
	r, err := New(Options{Dir: t.TempDir(), Env: map[string]string{"STRIPE_KEY": "sk_live"}, InheritEnv: []string{"EXTRA_OK"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rel := &env.Release{Source: env.Source{Key: "pr-1", Trusted: true}, Vars: map[string]string{"DATABASE_URL": "sqlite:/x"}}
	has := func(e []string, kv string) bool { return slices.Contains(e, kv) }
	trusted := r.environ(rel, 1234)
	for _, want := range []string{"STRIPE_KEY=sk_live", "DATABASE_URL=sqlite:/x", "PORT=1234", "HOST=127.0.0.1", "EXTRA_OK=yes", "LC_TIME=C", "PREVIEWD_ENV=pr-1"} {
		if !has(trusted, want) {
			t.Errorf("trusted environment lacks %s", want)
		}
	}
	if !slices.ContainsFunc(trusted, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		t.Error("PATH is not inherited")
	}
	rel.Trusted = false
	untrusted := r.environ(rel, 1234)
	if has(untrusted, "STRIPE_KEY=sk_live") {
		t.Error("an untrusted change got the configured env")
	}
	if !has(untrusted, "DATABASE_URL=sqlite:/x") {
		t.Error("an untrusted change lacks its own database")
	}
	for _, e := range [][]string{trusted, untrusted} {
		for _, kv := range e {
			if strings.Contains(kv, "s3cret") || strings.Contains(kv, "hunter2") {
				t.Errorf("previewd's secret leaked: %s", kv)
			}
		}
	}
}
