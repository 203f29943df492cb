package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/tmpl"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the address of the API, dashboard, webhooks and preview
	// proxy. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// DataDir holds the store, environment work dirs, databases and logs.
	// Relative paths are relative to the config file. Default .previewd.
	DataDir string `yaml:"dataDir"`
	// Instance names this previewd deployment on the PostgreSQL server and
	// the cluster it shares with others: every role, schema, database and
	// namespace it makes is marked with it, and orphan collection only
	// ever removes what carries it. The replicas of one deployment (and
	// `previewd db` in its CI) must share it; deployments of different
	// projects must not. A DNS label of at most 63 characters. Default:
	// derived from the forge's repository (github owner/repo, or the git
	// URL), so it is the same wherever the same repository is configured.
	Instance string `yaml:"instance"`
	// Domain is the base domain of environment hosts: <key>.<domain>.
	// Default localhost.
	Domain string `yaml:"domain"`
	// URL is an optional Go template for environment URLs, over .Key,
	// .Host, .Domain and .Port (internal/tmpl's URLData, with its
	// functions), e.g. https://{{.Key}}.preview.example.com.
	// Default http://<key>.<domain>:<listen port>.
	URL string `yaml:"url"`
	// Concurrency is how many environments are reconciled at once.
	// Default 4.
	Concurrency int `yaml:"concurrency"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"logLevel"`
	// Forge says where changes come from.
	Forge Forge `yaml:"forge"`
	// Runtime says where environments run.
	Runtime Runtime `yaml:"runtime"`
	// Database says what database each environment gets.
	Database Database `yaml:"database"`
	// Store says where previewd keeps its own state.
	Store Store `yaml:"store"`
	// Previews says how previews may be reached.
	Previews Previews `yaml:"previews"`
	// Migrate is a shell command run in the environment's checkout, with
	// the environment's variables, before each new version starts. A
	// failure marks the environment failed and keeps the old version.
	Migrate string `yaml:"migrate"`
	// Paths are path filters: globs of files inside the repository, where
	// "**" spans directories (apps/web/**, **/*.go). A pull request or
	// branch whose diff against its base (from their merge base) touches
	// none of them gets no environment, or keeps the one it has at its
	// last deployed commit, and its status says why. Production always
	// deploys. Empty (the default) deploys every change. The repository's
	// .previewd.yaml may set them too.
	Paths []string `yaml:"paths"`
	// Auth says who may use the API and dashboard.
	Auth Auth `yaml:"auth"`
	// Lifecycle says when previews sleep, expire and queue, and prices
	// what they use.
	Lifecycle Lifecycle `yaml:"lifecycle"`

	// dir is the directory of the config file.
	dir string
}

// Forge selects and configures the source of changes.
type Forge struct {
	// Kind is git or github. Default git.
	Kind string `yaml:"kind"`
	// Git: every branch of a git repository is an environment.
	Git Git `yaml:"git"`
	// GitHub: every open pull request of a GitHub repository is an
	// environment.
	GitHub GitHub `yaml:"github"`
}

// Git configures the git forge.
type Git struct {
	// URL of the repository: a local path or a remote URL. Relative paths
	// are relative to the config file. Required.
	URL string `yaml:"url"`
	// PollInterval is how often branches are listed. Default 5s.
	PollInterval Duration `yaml:"pollInterval"`
	// ProductionBranch becomes the environment "production". Default main.
	ProductionBranch string `yaml:"productionBranch"`
	// Branches, if set, are path.Match globs; only matching branches (and
	// the production branch) get environments.
	Branches []string `yaml:"branches"`
	// IgnoreBranches are globs of branches that never get environments.
	IgnoreBranches []string `yaml:"ignoreBranches"`
}

// Runtime selects and configures where environments run.
type Runtime struct {
	// Kind is local, kubernetes or argocd. Default local.
	Kind string `yaml:"kind"`
	// Local runs each environment as a process on this machine.
	Local Local `yaml:"local"`
	// Kubernetes runs each environment in its own namespace (kind
	// kubernetes), or provisions it for Argo CD (kind argocd).
	Kubernetes Kubernetes `yaml:"kubernetes"`
}

// Local configures the local process runtime.
type Local struct {
	// Build is a shell command run in the checkout before migrate and run,
	// e.g. "go build -o app .". Optional.
	Build string `yaml:"build"`
	// Run is the shell command that starts the app; it must listen on
	// $PORT. Default ./app.
	Run string `yaml:"run"`
	// HealthPath is polled until it answers 2xx. Default /healthz.
	HealthPath string `yaml:"healthPath"`
	// Processes, instead of Run and HealthPath, are the environment's
	// processes by name, exactly one of them http (see Process). Run is
	// the shorthand for one process, "web", with http: true.
	Processes map[string]Process `yaml:"processes"`
	// StopAppsOnExit stops every app's processes when serve ends
	// (SIGTERM, then SIGKILL after a grace period), as serve
	// --stop-apps-on-exit does. Default false: they keep running and the
	// next previewd adopts them.
	StopAppsOnExit bool `yaml:"stopAppsOnExit"`
	// StartTimeout bounds the wait for the first healthy answer.
	// Default 60s.
	StartTimeout Duration `yaml:"startTimeout"`
	// BuildTimeout bounds build and migrate. Default 10m.
	BuildTimeout Duration `yaml:"buildTimeout"`
	// MaxRestarts is how many crashes in a row are restarted (with backoff)
	// before the environment is marked failed. Default 5.
	MaxRestarts int `yaml:"maxRestarts"`
	// Env is added to every app's, build's and migrate's environment, for
	// trusted changes: pull requests from forks get it only when
	// forge.github.forks.trusted is true.
	Env map[string]string `yaml:"env"`
	// InheritEnv names variables of previewd's own environment that apps,
	// builds and migrations inherit, besides PATH, HOME, locale, proxy,
	// TLS and Go toolchain variables. Nothing else of previewd's
	// environment (its tokens, passwords) reaches them.
	InheritEnv []string `yaml:"inheritEnv"`
	// Caching: caches, outputs, cacheMaxAge, cacheMaxBytes (caches.go).
	Caching `yaml:",inline"`
}

// Previews configures how previews may be reached.
type Previews struct {
	// RequireLoopback fails the start of an app that listens on an
	// address beyond loopback (0.0.0.0 and :: included), where it is
	// reachable around previewd's proxy, instead of warning in its
	// status. The local runtime gives apps HOST=127.0.0.1 to bind to and
	// checks their listening sockets (on Linux). Default false.
	RequireLoopback bool `yaml:"requireLoopback"`
	// Access is who may open a preview: public (anyone with the URL),
	// password (HTTP Basic with any user name, or a small page for
	// browsers) or signin (previewd's own sign-in, as a viewer or
	// better). Production stays public unless ProtectProduction. Default
	// public.
	Access string `yaml:"access"`
	// Password is the shared password of access password, at least 12
	// characters; use ${VAR}.
	Password string `yaml:"password"`
	// BypassToken lets a request with the header X-Previewd-Bypass:
	// <token> through (CI, e2e tests, agents); use ${VAR}. The header is
	// stripped before the app.
	BypassToken string `yaml:"bypassToken"`
	// ProtectProduction puts production behind the same access.
	ProtectProduction bool `yaml:"protectProduction"`
	// SigninURL is previewd's own address, where access signin sends a
	// visitor to sign in, e.g. https://previewd.example.com. Default
	// github.dashboardURL.
	SigninURL string `yaml:"signinURL"`
}

// minPreviewPasswordLen is the shortest previews.password accepted.
const minPreviewPasswordLen = 12

// SigninURL is where access signin sends a visitor to sign in.
func (c *Config) SigninURL() string {
	if c.Previews.SigninURL != "" {
		return c.Previews.SigninURL
	}
	return c.Forge.GitHub.DashboardURL
}

func (c *Config) validatePreviews(bad func(string, string, ...any)) {
	p := c.Previews
	switch p.Access {
	case "", "public":
	case "password":
		if len(p.Password) < minPreviewPasswordLen {
			bad("previews.password", "access password needs a password of at least %d characters; use ${VAR}", minPreviewPasswordLen)
		}
	case "signin":
		if len(c.Auth.Tokens) == 0 {
			bad("previews.access", "signin needs a sign-in method in auth (auth.tokens)")
		}
		if c.SigninURL() == "" {
			bad("previews.signinURL", "access signin needs previewd's address (or github.dashboardURL) to send visitors to sign in")
		}
	default:
		bad("previews.access", "unknown value %q; want public, password or signin", p.Access)
	}
	if p.SigninURL != "" {
		if u, err := url.Parse(p.SigninURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("previews.signinURL", "%q is not an http(s) URL", p.SigninURL)
		}
	}
	if p.BypassToken != "" && len(p.BypassToken) < minTokenLen {
		bad("previews.bypassToken", "too short; want at least %d characters (e.g. openssl rand -hex 32)", minTokenLen)
	}
}

// Database selects and configures each environment's database.
type Database struct {
	// Kind is none, sqlite or postgres. Default sqlite.
	Kind string `yaml:"kind"`
	// SQLite gives each environment its own database file.
	SQLite SQLite `yaml:"sqlite"`
	// Postgres gives each environment its own role and schema or database.
	Postgres Postgres `yaml:"postgres"`
	// Rehearsal rehearses each preview's migrations on a copy of the
	// reference data first (postgres).
	Rehearsal Rehearsal `yaml:"rehearsal"`
}

// SQLite configures the sqlite database provider.
type SQLite struct {
	// Seed is a SQLite file copied into each new environment's database.
	// Optional: without it, each starts empty.
	Seed string `yaml:"seed"`
}

// Store selects where previewd keeps its state: environments, inventory
// and history.
type Store struct {
	// Kind is sqlite (a file in dataDir) or postgres, which several
	// previewd replicas can share. Default sqlite.
	Kind string `yaml:"kind"`
	// Postgres configures the postgres store.
	Postgres StorePostgres `yaml:"postgres"`
}

// StorePostgres configures the postgres store.
type StorePostgres struct {
	// URL is a postgres:// URL (or keyword=value string) of previewd's
	// own database; the tables go in the first schema of its search_path.
	// Required with kind postgres. Use ${VAR} for the password.
	URL string `yaml:"url"`
}

// Duration is a time.Duration written as "5s" or "1m30s".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. 5s, 1m)", n.Line, s)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Load reads, expands, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data, filepath.Dir(abs), os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a config, replacing ${VAR} in string values with lookup's
// answer ("$${" stands for a literal "${"), applies defaults and validates.
// Relative paths are resolved against dir.
func Parse(data []byte, dir string, lookup func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	// A passwordSecret written in the file but empty once expanded (a
	// ${VAR} set to "", as GitHub Actions does for a missing secret)
	// would silently fall back to a random secret in dataDir.
	ps := scalarAt(&root, "database", "postgres", "passwordSecret")
	secretWritten := ps != nil && strings.TrimSpace(ps.Value) != ""
	var missing []string
	expandNode(&root, lookup, &missing)
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variables not set: %s", strings.Join(missing, ", "))
	}
	expanded, err := yaml.Marshal(&root)
	if err != nil {
		return nil, err
	}
	c := &Config{dir: dir}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(expanded))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil {
			return nil, err
		}
	}
	c.Database.Postgres.secretWritten = secretWritten
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// scalarAt returns the scalar node at the mapping keys path under a
// document node, or nil.
func scalarAt(n *yaml.Node, path ...string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, k := range path {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	if n.Kind != yaml.ScalarNode {
		return nil
	}
	return n
}

func expandNode(n *yaml.Node, lookup func(string) (string, bool), missing *[]string) {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		n.Value = expand(n.Value, lookup, missing)
		return
	}
	for _, c := range n.Content {
		expandNode(c, lookup, missing)
	}
}

// expand replaces ${NAME} and leaves every other '$' alone; "$${" is a
// literal "${".
func expand(s string, lookup func(string) (string, bool), missing *[]string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		name := s[i+2 : i+j]
		b.WriteString(s[:i])
		v, ok := lookup(name)
		if !ok {
			*missing = append(*missing, name)
		}
		b.WriteString(v)
		s = s[i+j+1:]
	}
}

// SetDefaults fills every unset field with its default and resolves
// relative paths against the config file's directory.
func (c *Config) SetDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	defDur := func(p *Duration, v time.Duration) {
		if p.Duration == 0 {
			p.Duration = v
		}
	}
	def(&c.Listen, "127.0.0.1:8080")
	def(&c.DataDir, ".previewd")
	def(&c.Domain, "localhost")
	def(&c.LogLevel, "info")
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	def(&c.Forge.Kind, "git")
	defDur(&c.Forge.Git.PollInterval, 5*time.Second)
	def(&c.Forge.Git.ProductionBranch, "main")
	if c.Forge.Kind == "github" {
		c.Forge.GitHub.setDefaults(c)
	}
	def(&c.Runtime.Kind, "local")
	c.Runtime.Local.setProcessDefaults()
	defDur(&c.Runtime.Local.StartTimeout, 60*time.Second)
	defDur(&c.Runtime.Local.BuildTimeout, 10*time.Minute)
	if c.Runtime.Local.MaxRestarts == 0 {
		c.Runtime.Local.MaxRestarts = 5
	}
	c.Runtime.Local.Caching.setDefaults()
	def(&c.Database.Kind, "sqlite")
	def(&c.Store.Kind, "sqlite")
	c.Database.Postgres.setDefaults()
	c.Database.Rehearsal.setDefaults(c.Database.Kind)
	c.Runtime.Kubernetes.setDefaults(c)
	c.Auth.setDefaults()
	c.Lifecycle.setDefaults()

	c.DataDir = c.Path(c.DataDir)
	if c.Forge.Git.URL != "" && isLocalPath(c.Forge.Git.URL) {
		c.Forge.Git.URL = c.Path(c.Forge.Git.URL)
	}
	def(&c.Instance, DefaultInstance(c.Forge))
	if c.Database.SQLite.Seed != "" {
		c.Database.SQLite.Seed = c.Path(c.Database.SQLite.Seed)
	}
}

// Path resolves p against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// isLocalPath reports whether a git URL names a path on this machine rather
// than a remote (scheme://… or user@host:path).
func isLocalPath(u string) bool {
	if strings.Contains(u, "://") {
		return false
	}
	if i := strings.IndexByte(u, ':'); i > 0 && !strings.ContainsAny(u[:i], "/") {
		return false // scp-like user@host:path
	}
	return true
}

// FieldError names one bad field.
type FieldError struct {
	Field string
	Msg   string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// Errors is every problem Validate found.
type Errors []FieldError

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Validate checks the config and returns Errors naming each bad field and
// its allowed values.
func (c *Config) Validate() error {
	var es Errors
	bad := func(field, format string, a ...any) {
		es = append(es, FieldError{field, fmt.Sprintf(format, a...)})
	}
	oneOf := func(field, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(field, "unknown value %q; want %s", v, orList(allowed))
	}
	if _, _, err := splitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port: %v", c.Listen, err)
	}
	if c.Domain != "" && strings.ContainsAny(c.Domain, "/: ") {
		bad("domain", "%q is not a domain name", c.Domain)
	}
	if c.URL != "" {
		if err := tmpl.Check("url", c.URL, tmpl.SampleURL()); err != nil {
			bad("url", "%v", err)
		}
	}
	if err := CheckInstance(c.Instance); err != nil {
		bad("instance", "%v", err)
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		bad("concurrency", "%d is out of range; want 1 to 256", c.Concurrency)
	}
	oneOf("logLevel", c.LogLevel, "debug", "info", "warn", "error")

	oneOf("forge.kind", c.Forge.Kind, "git", "github")
	if c.Forge.Kind == "github" {
		c.Forge.GitHub.validate(bad)
	}
	if c.Forge.Kind == "git" {
		g := c.Forge.Git
		if g.URL == "" {
			bad("forge.git.url", "required: a repository path or URL")
		}
		if g.PollInterval.Duration < 100*time.Millisecond {
			bad("forge.git.pollInterval", "%s is too short; want at least 100ms", g.PollInterval)
		}
		if err := checkBranchName(g.ProductionBranch); err != nil {
			bad("forge.git.productionBranch", "%v", err)
		}
		checkGlobs(bad, "forge.git.branches", g.Branches)
		checkGlobs(bad, "forge.git.ignoreBranches", g.IgnoreBranches)
	}

	oneOf("runtime.kind", c.Runtime.Kind, "local", "kubernetes", "argocd")
	if c.Runtime.Kind == "kubernetes" || c.Runtime.Kind == "argocd" {
		c.Runtime.Kubernetes.validate(c.Runtime.Kind, bad)
	}
	if c.Runtime.Kind == "local" {
		l := c.Runtime.Local
		l.validateProcesses(bad)
		if l.StartTimeout.Duration <= 0 {
			bad("runtime.local.startTimeout", "must be positive")
		}
		if l.MaxRestarts < 0 {
			bad("runtime.local.maxRestarts", "must not be negative")
		}
		for k := range l.Env {
			if !validEnvName(k) {
				bad("runtime.local.env."+k, "not a valid variable name; want [A-Za-z_][A-Za-z0-9_]*")
			}
		}
		l.Caching.validate(bad)
	}

	for i, g := range c.Paths {
		if err := env.CheckPathGlob(g); err != nil {
			bad("paths["+strconv.Itoa(i)+"]", "%v", err)
		}
	}

	c.validatePreviews(bad)
	if c.Previews.RequireLoopback && c.Runtime.Kind != "local" {
		bad("previews.requireLoopback", "only runtime.kind local checks the sockets an app listens on; with %s it would guard nothing", c.Runtime.Kind)
	}

	oneOf("database.kind", c.Database.Kind, "none", "sqlite", "postgres")
	if c.Database.Kind == "postgres" {
		c.Database.Postgres.validate(bad)
	}
	if c.Database.Kind == "sqlite" && c.Database.SQLite.Seed != "" {
		if st, err := os.Stat(c.Database.SQLite.Seed); err != nil || st.IsDir() {
			bad("database.sqlite.seed", "%q is not a readable file", c.Database.SQLite.Seed)
		}
	}
	oneOf("store.kind", c.Store.Kind, "sqlite", "postgres")
	if c.Store.Kind == "postgres" {
		if c.Store.Postgres.URL == "" {
			bad("store.postgres.url", "required with store.kind postgres: a postgres:// URL of previewd's own database")
		} else if _, err := checkPostgresURL(c.Store.Postgres.URL); err != nil {
			bad("store.postgres.url", "%v", err)
		}
	}
	c.Auth.validate(bad)
	c.Lifecycle.validate(bad)
	c.Database.Rehearsal.validate(c.Database.Kind, bad)
	if c.Runtime.Kind == "argocd" {
		// Argo CD owns the workloads and would scale a sleeping
		// preview's back up.
		if c.Lifecycle.SleepAfter.Duration > 0 {
			bad("lifecycle.sleepAfter", "not with runtime.kind argocd: Argo CD owns the workloads and would scale them back up")
		}
		if c.Lifecycle.Evict == "idle" {
			bad("lifecycle.evict", "idle is not possible with runtime.kind argocd: previewd cannot put previews to sleep there")
		}
	}
	if len(es) == 0 {
		return nil
	}
	return es
}

func orList(v []string) string {
	switch len(v) {
	case 0:
		return "nothing"
	case 1:
		return v[0]
	}
	return strings.Join(v[:len(v)-1], ", ") + " or " + v[len(v)-1]
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}

// checkBranchName applies the part of git's ref name rules that matter
// here.
func checkBranchName(b string) error {
	switch {
	case b == "":
		return errors.New("required")
	case strings.HasPrefix(b, "-"):
		return fmt.Errorf("%q must not start with '-'", b)
	case strings.ContainsAny(b, " ~^:?*[\\\x7f") || strings.Contains(b, ".."):
		return fmt.Errorf("%q is not a valid branch name", b)
	}
	return nil
}
