package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func lookup(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte("forge: {git: {url: ./repo}}\n"), "/etc/previewd", lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]any{
		"listen":        {c.Listen, "127.0.0.1:8080"},
		"dataDir":       {c.DataDir, "/etc/previewd/.previewd"},
		"domain":        {c.Domain, "localhost"},
		"forge.kind":    {c.Forge.Kind, "git"},
		"git.url":       {c.Forge.Git.URL, "/etc/previewd/repo"},
		"poll":          {c.Forge.Git.PollInterval.Duration, 5 * time.Second},
		"production":    {c.Forge.Git.ProductionBranch, "main"},
		"runtime.kind":  {c.Runtime.Kind, "local"},
		"run":           {c.Runtime.Local.Run, "./app"},
		"healthPath":    {c.Runtime.Local.HealthPath, "/healthz"},
		"startTimeout":  {c.Runtime.Local.StartTimeout.Duration, 60 * time.Second},
		"database.kind": {c.Database.Kind, "sqlite"},
		"concurrency":   {c.Concurrency, 4},
		"env url":       {c.EnvURL("pr-1"), "http://pr-1.localhost:8080"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
}

func TestParseExpandsVariables(t *testing.T) {
	y := `
forge: {git: {url: "${REPO}", productionBranch: "${BRANCH}"}}
runtime: {local: {run: "./app --literal $${NOT_EXPANDED} $HOME"}}
url: "https://{{.Key}}.${ZONE}"
`
	c, err := Parse([]byte(y), "/x", lookup(map[string]string{"REPO": "https://git.example.com/a/b.git", "BRANCH": "trunk", "ZONE": "preview.example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Forge.Git.URL != "https://git.example.com/a/b.git" || c.Forge.Git.ProductionBranch != "trunk" {
		t.Errorf("forge = %+v", c.Forge.Git)
	}
	if c.Runtime.Local.Run != "./app --literal ${NOT_EXPANDED} $HOME" {
		t.Errorf("run = %q", c.Runtime.Local.Run)
	}
	if got := c.EnvURL("pr-7"); got != "https://pr-7.preview.example.com" {
		t.Errorf("EnvURL = %q", got)
	}
	// Without a template the runtime's kind decides: previewd's proxy
	// locally, https on the cluster's ingress on Kubernetes.
	c.URL, c.Domain = "", "preview.example.com"
	for kind, want := range map[string]string{"local": "http://pr-7.preview.example.com:8080", "kubernetes": "https://pr-7.preview.example.com", "argocd": "https://pr-7.preview.example.com"} {
		c.Runtime.Kind = kind
		if got := c.EnvURL("pr-7"); got != want {
			t.Errorf("EnvURL with runtime %s = %q, want %q", kind, got, want)
		}
	}
	c.Runtime.Kind, c.Listen = "local", "0.0.0.0:80"
	if got := c.EnvURL("pr-7"); got != "http://pr-7.preview.example.com" {
		t.Errorf("EnvURL on port 80 = %q", got)
	}
	// A value with YAML syntax in it stays a value.
	c, err = Parse([]byte(`forge: {git: {url: "${REPO}"}}`), "/x", lookup(map[string]string{"REPO": "/a: b\n- c"}))
	if err != nil || c.Forge.Git.URL != "/a: b\n- c" {
		t.Errorf("url = %q, err %v", c.Forge.Git.URL, err)
	}
	if _, err := Parse([]byte(`forge: {git: {url: "${NOPE}"}}`), "/x", lookup(nil)); err == nil || !strings.Contains(err.Error(), "NOPE") {
		t.Errorf("missing variable: err = %v", err)
	}
}

func TestValidateNamesFields(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want []string
	}{
		"unknown runtime":  {"forge: {git: {url: x}}\nruntime: {kind: lokal}", []string{`runtime.kind: unknown value "lokal"; want local`}},
		"unknown database": {"forge: {git: {url: x}}\ndatabase: {kind: mysql}", []string{`database.kind: unknown value "mysql"; want none, sqlite or postgres`}},
		"several": {"listen: nope\nconcurrency: 1000\nforge: {git: {url: x, pollInterval: 1ms, productionBranch: '-x'}}\nruntime: {local: {healthPath: healthz}}", []string{
			"listen:", "concurrency: 1000 is out of range", "forge.git.pollInterval:", "forge.git.productionBranch:", "runtime.local.healthPath:",
		}},
		"missing url":                  {"forge: {kind: git}", []string{"forge.git.url: required"}},
		"bad glob":                     {"forge: {git: {url: x, branches: ['[']}}", []string{"forge.git.branches[0]:"}},
		"bad env name":                 {"forge: {git: {url: x}}\nruntime: {local: {env: {'A-B': x}}}", []string{"runtime.local.env.A-B:"}},
		"bad url":                      {"forge: {git: {url: x}}\nurl: '{{.Nope}}'", []string{"url:"}},
		"postgres":                     {"forge: {git: {url: x}}\ndatabase: {kind: postgres, postgres: {isolation: table}}", []string{"database.postgres.adminURL: required", `database.postgres.isolation: unknown value "table"`}},
		"missing seed":                 {"forge: {git: {url: x}}\ndatabase: {sqlite: {seed: /does/not/exist}}", []string{"database.sqlite.seed:"}},
		"pooled admin, database mode":  {"forge: {git: {url: x}}\ndatabase: {kind: postgres, postgres: {adminURL: 'postgres://u@h/db', adminPooled: true, isolation: database}}", []string{"database.postgres.adminPooled: true needs isolation schema"}},
		"create schema, database mode": {"forge: {git: {url: x}}\ndatabase: {kind: postgres, postgres: {adminURL: 'postgres://u@h/db', allowCreateSchema: true, isolation: database}}", []string{"database.postgres.allowCreateSchema: true needs isolation schema"}},
		"bad log level":                {"logLevel: loud\nforge: {git: {url: x}}", []string{`logLevel: unknown value "loud"; want debug, info, warn or error`}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "/x", lookup(nil))
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
		})
	}
}

func TestUnknownKeysAreErrors(t *testing.T) {
	for _, y := range []string{
		"forge: {git: {url: x}}\nlisten_addr: x",
		"forge: {git: {url: x, pollIntervall: 5s}}",
		"forge: {git: {url: x}}\nruntime: {local: {comand: x}}",
	} {
		_, err := Parse([]byte(y), "/x", lookup(nil))
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("%q: err = %v, want an unknown-field error", y, err)
		}
	}
	if _, err := Parse([]byte("forge: {git: {url: x, pollInterval: soon}}"), "/x", lookup(nil)); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Errorf("bad duration: err = %v", err)
	}
}

// TestPreviewsRequireLoopback: previews.requireLoopback parses (default
// false) and is refused where no runtime checks the sockets.
func TestPreviewsRequireLoopback(t *testing.T) {
	c, err := Parse([]byte("forge: {git: {url: x}}\n"), "/x", lookup(nil))
	if err != nil || c.Previews.RequireLoopback {
		t.Fatalf("default: %v, %v", c.Previews.RequireLoopback, err)
	}
	c, err = Parse([]byte("forge: {git: {url: x}}\npreviews: {requireLoopback: true}\n"), "/x", lookup(nil))
	if err != nil || !c.Previews.RequireLoopback {
		t.Fatalf("set: %v, %v", c.Previews.RequireLoopback, err)
	}
	c.Runtime.Kind = "kubernetes"
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "previews.requireLoopback: only runtime.kind local") {
		t.Errorf("requireLoopback on kubernetes: %v", err)
	}
}

func TestInstance(t *testing.T) {
	gh := func(owner, repo string) Forge {
		return Forge{Kind: "github", GitHub: GitHub{Owner: owner, Repo: repo}}
	}
	if a, b := DefaultInstance(gh("Acme", "Shop")), DefaultInstance(gh("acme", "shop")); a != b {
		t.Errorf("owner/repo case changes the instance: %s, %s", a, b)
	}
	if a, b := DefaultInstance(gh("acme", "shop")), DefaultInstance(gh("acme", "blog")); a == b {
		t.Errorf("two repositories share instance %s", a)
	}
	git := func(u string) Forge { return Forge{Kind: "git", Git: Git{URL: u}} }
	if a, b := DefaultInstance(git("/srv/a.git")), DefaultInstance(git("/srv/b.git")); a == b {
		t.Errorf("two git URLs share instance %s", a)
	}
	for _, f := range []Forge{gh("acme", "shop"), git("/srv/a.git")} {
		if err := CheckInstance(DefaultInstance(f)); err != nil {
			t.Errorf("default instance: %v", err)
		}
	}
	tests := map[string]bool{
		"shop": true, "a": true, "shop-prod-1": true, strings.Repeat("a", 63): true,
		"": false, "Shop": false, "-shop": false, "shop-": false, "shop_1": false, "a.b": false, strings.Repeat("a", 64): false,
	}
	for s, ok := range tests {
		if err := CheckInstance(s); (err == nil) != ok {
			t.Errorf("CheckInstance(%q) = %v; want ok %v", s, err, ok)
		}
	}
}

func TestInstanceValidated(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	_, err := Parse([]byte("forge: {git: {url: /srv/shop.git}}\ninstance: Shop_1\n"), t.TempDir(), none)
	if err == nil || !strings.Contains(err.Error(), "instance: ") {
		t.Fatalf("instance Shop_1: %v; want an error naming instance", err)
	}
	c, err := Parse([]byte("forge: {git: {url: /srv/shop.git}}\n"), t.TempDir(), none)
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance != DefaultInstance(c.Forge) {
		t.Errorf("default instance %q; want %q", c.Instance, DefaultInstance(c.Forge))
	}
	c, err = Parse([]byte("forge: {git: {url: /srv/shop.git}}\ninstance: shop-prod\n"), t.TempDir(), none)
	if err != nil || c.Instance != "shop-prod" {
		t.Errorf("instance shop-prod: %v, %q", err, c.Instance)
	}
}
