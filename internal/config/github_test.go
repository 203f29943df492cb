package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGitHubDefaults(t *testing.T) {
	y := `
forge:
  kind: github
  github: {owner: acme, repo: shop, token: "${GITHUB_TOKEN}"}
`
	c, err := Parse([]byte(y), "/etc/previewd", lookup(map[string]string{"GITHUB_TOKEN": "ghp_x"}))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Forge.GitHub
	checks := map[string][2]any{
		"apiURL":           {g.APIURL, "https://api.github.com/"},
		"token":            {g.Token, "ghp_x"},
		"cloneURL":         {g.CloneURL, "https://github.com/acme/shop.git"},
		"pollInterval":     {g.PollInterval.Duration, 60 * time.Second},
		"poll by kind":     {c.Forge.PollInterval(), 60 * time.Second},
		"requestTimeout":   {g.RequestTimeout.Duration, 30 * time.Second},
		"productionBranch": {g.ProductionBranch, "main"},
		"drafts":           {g.Drafts, false},
		"forks.label":      {g.Forks.Label, "preview"},
		"forks.trusted":    {g.Forks.Trusted, false},
		"commitStatus":     {g.CommitStatus, false},
		"deployments":      {g.DeploymentsEnabled(), true},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
}

func TestGitHubEnterpriseAndApp(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.pem"), []byte("key"), 0o600)
	y := `
forge:
  kind: github
  github:
    apiURL: https://ghe.example.com/api/v3
    owner: acme
    repo: shop
    app: {id: 12, installationID: 34, privateKeyFile: app.pem}
    deployments: false
    pollInterval: 5m
`
	c, err := Parse([]byte(y), dir, lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Forge.GitHub
	if g.APIURL != "https://ghe.example.com/api/v3/" || g.CloneURL != "https://ghe.example.com/acme/shop.git" {
		t.Errorf("apiURL %q cloneURL %q", g.APIURL, g.CloneURL)
	}
	if g.App.PrivateKeyFile != filepath.Join(dir, "app.pem") || g.DeploymentsEnabled() || c.Forge.PollInterval() != 5*time.Minute {
		t.Errorf("github = %+v", g)
	}
}

func TestGitHubValidate(t *testing.T) {
	tests := map[string]struct {
		yaml  string
		field string
	}{
		"no owner":        {`{repo: r, token: t}`, "forge.github.owner"},
		"bad owner":       {`{owner: "a/b", repo: r, token: t}`, "forge.github.owner"},
		"no repo":         {`{owner: o, token: t}`, "forge.github.repo"},
		"bad repo":        {`{owner: o, repo: "..", token: t}`, "forge.github.repo"},
		"no auth":         {`{owner: o, repo: r}`, "forge.github.token"},
		"both auths":      {`{owner: o, repo: r, token: t, app: {id: 1, installationID: 2, privateKeyFile: /nonexistent}}`, "forge.github.token"},
		"app without key": {`{owner: o, repo: r, app: {id: 1, installationID: 2, privateKeyFile: /nonexistent}}`, "forge.github.app.privateKeyFile"},
		"app without id":  {`{owner: o, repo: r, app: {installationID: 2}}`, "forge.github.app.id"},
		"bad api url":     {`{owner: o, repo: r, token: t, apiURL: "ftp://x"}`, "forge.github.apiURL"},
		"short poll":      {`{owner: o, repo: r, token: t, pollInterval: 1ms}`, "forge.github.pollInterval"},
		"bad branch":      {`{owner: o, repo: r, token: t, productionBranch: "-x"}`, "forge.github.productionBranch"},
		"bad glob":        {`{owner: o, repo: r, token: t, branches: ["[x"]}`, "forge.github.branches[0]"},
		"bad target glob": {`{owner: o, repo: r, token: t, targetBranches: ["ok", "[x"]}`, "forge.github.targetBranches[1]"},
		"blank label":     {`{owner: o, repo: r, token: t, labels: [" "]}`, "forge.github.labels[0]"},
		"blank check":     {`{owner: o, repo: r, token: t, waitForChecks: [""]}`, "forge.github.waitForChecks[0]"},
		"bad dashboard":   {`{owner: o, repo: r, token: t, dashboardURL: "not a url"}`, "forge.github.dashboardURL"},
		"unknown key":     {`{owner: o, repo: r, token: t, tokn: x}`, "tokn"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("forge: {kind: github, github: "+tt.yaml+"}\n"), t.TempDir(), lookup(nil))
			if err == nil {
				t.Fatal("no error")
			}
			var es Errors
			if errors.As(err, &es) {
				for _, e := range es {
					if e.Field == tt.field {
						return
					}
				}
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
		})
	}
}
