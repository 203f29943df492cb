package config

import (
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// GitHub configures the github forge: every open pull request of one
// repository is an environment, and the production branch is production.
// Webhooks are the primary signal; polling is the safety net.
type GitHub struct {
	// APIURL is the REST API's base URL. Default https://api.github.com/.
	// For GitHub Enterprise Server use https://HOST/api/v3/ (the /api/v3/
	// is added when missing, unless the host starts with "api.").
	APIURL string `yaml:"apiURL"`
	// Owner is the user or organisation that owns the repository. Required.
	Owner string `yaml:"owner"`
	// Repo is the repository's name. Required.
	Repo string `yaml:"repo"`
	// Token authenticates as a user or with a fine-grained token, e.g.
	// ${GITHUB_TOKEN}. Exactly one of token and app is required.
	Token string `yaml:"token"`
	// App authenticates as a GitHub App installation; its installation
	// tokens are refreshed before they expire.
	App GitHubApp `yaml:"app"`
	// WebhookSecret is the secret of the repository's webhook, which
	// signs every delivery (X-Hub-Signature-256). Without it,
	// POST /webhooks/github refuses every delivery and only polling
	// finds changes. Use ${VAR}.
	WebhookSecret string `yaml:"webhookSecret"`
	// CloneURL is where the runtime fetches code from, including
	// refs/pull/<N>/head for pull requests. Default the repository's
	// https clone URL (https://github.com/OWNER/REPO.git, or the
	// Enterprise host's). The token (or the App's installation token) is
	// sent to it as an HTTP header, scoped to its host.
	CloneURL string `yaml:"cloneURL"`
	// PollInterval is how often open pull requests and the production
	// branch are listed (a conditional request: an unchanged answer costs
	// no rate limit). Default 60s.
	PollInterval Duration `yaml:"pollInterval"`
	// RequestTimeout bounds each API request. Default 30s.
	RequestTimeout Duration `yaml:"requestTimeout"`
	// ProductionBranch becomes the environment "production". Default main.
	ProductionBranch string `yaml:"productionBranch"`
	// Labels a pull request must all carry to get an environment.
	Labels []string `yaml:"labels"`
	// ExcludeLabels: a pull request carrying any of them gets no
	// environment (and loses the one it had).
	ExcludeLabels []string `yaml:"excludeLabels"`
	// Branches, if set, are path.Match globs on the head branch; only
	// matching pull requests get environments.
	Branches []string `yaml:"branches"`
	// IgnoreBranches are globs on the head branch that never get
	// environments.
	IgnoreBranches []string `yaml:"ignoreBranches"`
	// TargetBranches, if set, are globs on the base branch; only pull
	// requests into a matching branch get environments.
	TargetBranches []string `yaml:"targetBranches"`
	// Drafts deploys draft pull requests too. Default false.
	Drafts bool `yaml:"drafts"`
	// Forks says how pull requests from forks are treated.
	Forks GitHubForks `yaml:"forks"`
	// WaitForChecks names check runs or commit status contexts that must
	// all be green before a SHA is deployed; until then the environment
	// is pending with the reason.
	WaitForChecks []string `yaml:"waitForChecks"`
	// CommitStatus sets a commit status (context "previewd") on each
	// deployed SHA. Default false.
	CommitStatus bool `yaml:"commitStatus"`
	// Deployments creates a GitHub deployment per deployed SHA (environment
	// preview/<key>, or production), so the pull request shows "View
	// deployment". Default true.
	Deployments *bool `yaml:"deployments"`
	// DashboardURL is where people reach previewd's dashboard, e.g.
	// https://previewd.example.com. When set, the PR comment links to the
	// environment's page and deployments use it as their log URL.
	DashboardURL string `yaml:"dashboardURL"`
}

// GitHubApp names a GitHub App installation and its private key.
type GitHubApp struct {
	// ID is the App's id.
	ID int64 `yaml:"id"`
	// InstallationID is the id of the App's installation on the
	// repository's owner.
	InstallationID int64 `yaml:"installationID"`
	// PrivateKeyFile is the App's PEM private key. Relative paths are
	// relative to the config file.
	PrivateKeyFile string `yaml:"privateKeyFile"`
}

// GitHubForks configures pull requests whose head is in another
// repository.
type GitHubForks struct {
	// Label a maintainer adds to a fork's pull request to deploy it
	// (only people with triage access can label). Fork pull requests
	// without it get no environment. Default preview.
	Label string `yaml:"label"`
	// Trusted gives fork environments the secrets meant for same-repository
	// changes. Default false.
	Trusted bool `yaml:"trusted"`
}

// DeploymentsEnabled reports whether GitHub deployments are created.
func (g *GitHub) DeploymentsEnabled() bool { return g.Deployments == nil || *g.Deployments }

// Enabled reports whether the App is configured.
func (a GitHubApp) Enabled() bool {
	return a.ID != 0 || a.InstallationID != 0 || a.PrivateKeyFile != ""
}

// PollInterval is how often the active forge is listed.
func (f *Forge) PollInterval() time.Duration {
	if f.Kind == "github" {
		return f.GitHub.PollInterval.Duration
	}
	return f.Git.PollInterval.Duration
}

// WebURL returns the web host for an API URL: https://github.com for
// api.github.com, else the Enterprise host itself.
func githubWebURL(api string) string {
	u, err := url.Parse(api)
	if err != nil || u.Host == "" {
		return "https://github.com"
	}
	host := u.Host
	if strings.EqualFold(host, "api.github.com") {
		host = "github.com"
	} else if h, ok := strings.CutPrefix(host, "api."); ok {
		host = h // GHE.com data residency: api.<sub>.ghe.com
	}
	return u.Scheme + "://" + host
}

func (g *GitHub) setDefaults(c *Config) {
	if g.APIURL == "" {
		g.APIURL = "https://api.github.com/"
	}
	if !strings.HasSuffix(g.APIURL, "/") {
		g.APIURL += "/"
	}
	if g.CloneURL == "" && g.Owner != "" && g.Repo != "" {
		g.CloneURL = githubWebURL(g.APIURL) + "/" + g.Owner + "/" + g.Repo + ".git"
	}
	if g.CloneURL != "" && isLocalPath(g.CloneURL) {
		g.CloneURL = c.Path(g.CloneURL)
	}
	if g.PollInterval.Duration == 0 {
		g.PollInterval.Duration = 60 * time.Second
	}
	if g.RequestTimeout.Duration == 0 {
		g.RequestTimeout.Duration = 30 * time.Second
	}
	if g.ProductionBranch == "" {
		g.ProductionBranch = "main"
	}
	if g.Forks.Label == "" {
		g.Forks.Label = "preview"
	}
	if g.App.PrivateKeyFile != "" {
		g.App.PrivateKeyFile = c.Path(g.App.PrivateKeyFile)
	}
}

// ownerRE and repoRE are GitHub's rules for account and repository names.
var (
	ownerRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$`)
	repoRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

func (g *GitHub) validate(bad func(field, format string, a ...any)) {
	const p = "forge.github."
	if u, err := url.Parse(g.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad(p+"apiURL", "%q is not an http(s) URL", g.APIURL)
	}
	switch {
	case g.Owner == "":
		bad(p+"owner", "required: the user or organisation owning the repository")
	case !ownerRE.MatchString(g.Owner):
		bad(p+"owner", "%q is not a GitHub account name", g.Owner)
	}
	switch {
	case g.Repo == "":
		bad(p+"repo", "required: the repository's name")
	case !repoRE.MatchString(g.Repo) || g.Repo == "." || g.Repo == "..":
		bad(p+"repo", "%q is not a repository name", g.Repo)
	}
	switch {
	case g.Token != "" && g.App.Enabled():
		bad(p+"token", "set either token or app, not both")
	case g.Token == "" && !g.App.Enabled():
		bad(p+"token", "required: a token (e.g. ${GITHUB_TOKEN}) or app")
	case g.App.Enabled():
		if g.App.ID <= 0 {
			bad(p+"app.id", "required: the App's id")
		}
		if g.App.InstallationID <= 0 {
			bad(p+"app.installationID", "required: the installation's id")
		}
		if st, err := os.Stat(g.App.PrivateKeyFile); g.App.PrivateKeyFile == "" || err != nil || st.IsDir() {
			bad(p+"app.privateKeyFile", "%q is not a readable file", g.App.PrivateKeyFile)
		}
	}
	if strings.ContainsAny(g.Token, " \t\r\n") {
		bad(p+"token", "contains white space")
	}
	if g.CloneURL == "" {
		bad(p+"cloneURL", "required")
	}
	if g.PollInterval.Duration < 100*time.Millisecond {
		bad(p+"pollInterval", "%s is too short; want at least 100ms", g.PollInterval)
	}
	if g.RequestTimeout.Duration < 10*time.Millisecond {
		bad(p+"requestTimeout", "%s is too short; want at least 10ms", g.RequestTimeout)
	}
	if err := checkBranchName(g.ProductionBranch); err != nil {
		bad(p+"productionBranch", "%v", err)
	}
	checkLabels(bad, p+"labels", g.Labels)
	checkLabels(bad, p+"excludeLabels", g.ExcludeLabels)
	checkLabels(bad, p+"waitForChecks", g.WaitForChecks)
	checkGlobs(bad, p+"branches", g.Branches)
	checkGlobs(bad, p+"ignoreBranches", g.IgnoreBranches)
	checkGlobs(bad, p+"targetBranches", g.TargetBranches)
	if strings.TrimSpace(g.Forks.Label) == "" {
		bad(p+"forks.label", "must not be blank")
	}
	if g.DashboardURL != "" {
		if u, err := url.Parse(g.DashboardURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(p+"dashboardURL", "%q is not an http(s) URL", g.DashboardURL)
		}
	}
}

func checkLabels(bad func(string, string, ...any), field string, names []string) {
	for i, n := range names {
		if strings.TrimSpace(n) == "" {
			bad(field+"["+strconv.Itoa(i)+"]", "must not be blank")
		}
	}
}
