package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Postgres configures the postgres database provider: each environment
// gets its own role and either its own schema or its own database.
type Postgres struct {
	// AdminURL is how previewd connects to do its own work (create roles,
	// schemas, databases). Required. Use ${VAR} for the password.
	AdminURL string `yaml:"adminURL"`
	// AdminPooled says adminURL goes through a connection pooler in
	// transaction mode (PgBouncer's pool_mode = transaction). previewd then
	// sends its admin statements unnamed (pgx's exec mode) instead of
	// caching named prepared statements, which a server connection shared
	// with another previewd process already holds ("prepared statement
	// \"stmtcache_…\" already exists"). Only isolation schema is allowed
	// with it: isolation database takes a session advisory lock around
	// CREATE and DROP DATABASE (which cannot run in a transaction), and a
	// transaction pooler does not keep a session's lock. Point adminURL at
	// PostgreSQL itself for database mode; appHost may still be the pooler.
	// `previewd db check` says when adminURL looks pooled and this is off.
	// Default false.
	AdminPooled bool `yaml:"adminPooled"`
	// AllowCreateSchema (isolation schema only) lets apps that run
	// CREATE SCHEMA IF NOT EXISTS "<their DATABASE_SCHEMA>" on every
	// migration (a Drizzle-style migrator) run unmodified: without it
	// PostgreSQL refuses that statement ("permission denied for database"),
	// because it checks CREATE on the database before IF NOT EXISTS. Each
	// preview role then holds CREATE on adminURL's database, and previewd
	// installs an event trigger there (adminURL must be a superuser) that
	// refuses, for preview roles, any schema but the role's own (so no
	// preview can create or take another environment's schema, or one
	// production may later use), renaming schemas, extensions and
	// publications. The trade-off: preview roles hold a database privilege
	// whose limits rest on that trigger, an extension the app creates must
	// exist already, and a schema named previewd holds the trigger's
	// function. Schemas a role owns are dropped with it. Default false.
	AllowCreateSchema bool `yaml:"allowCreateSchema"`
	// Isolation is schema (one schema per environment in the admin URL's
	// database) or database (one database per environment, cloned from
	// Template). Default schema.
	Isolation string `yaml:"isolation"`
	// Template is the database cloned for each environment when isolation
	// is database. Empty means a new empty database.
	Template string `yaml:"template"`
	// AppHost, if set (host:port, e.g. a PgBouncer), is where the
	// DATABASE_URL given to apps points, instead of AdminURL's host.
	AppHost string `yaml:"appHost"`
	// ProductionURL is the DATABASE_URL given to production: a role of
	// its own, not a superuser. Default: the AdminURL's database and user,
	// with schema public, which hands production the admin role (validate
	// warns; serve refuses it on a listen beyond loopback unless
	// AllowAdminForProduction).
	ProductionURL string `yaml:"productionURL"`
	// AllowAdminForProduction lets serve give production the admin role
	// (ProductionURL unset) on a listen beyond loopback, on purpose.
	// Default false.
	AllowAdminForProduction bool `yaml:"allowAdminForProduction"`
	// ConnectionLimit is each environment role's connection limit.
	// Default 20.
	ConnectionLimit int `yaml:"connectionLimit"`
	// PasswordSecret derives each environment role's password (HMAC), so
	// that creating a database twice, from serve or from a CI job, gives
	// the same working URL; set it, from ${VAR}, for `previewd db create`
	// in CI. A ${VAR} that expands to empty is an error. Default: a random
	// secret kept in dataDir (written only when this is unset).
	PasswordSecret string `yaml:"passwordSecret"`
	// Masking maps a column, "table.column" (in schema public) or
	// "schema.table.column" (names as in the catalog, unquoted), to the SQL
	// expression that replaces its values in the template after each
	// refresh from production, e.g. users.email: "'user' || id ||
	// '@example.com'". The expression sees the row's original values. A
	// refresh whose expression errors, or leaves a non-null value as it
	// was, stops and keeps the old template. Needs template.
	Masking map[string]string `yaml:"masking"`
	// RefreshTemplate, if set, refreshes template from production
	// (productionURL's database, or else adminURL's) every so often:
	// schema and rows are copied, masked, verified and only then swapped
	// in. `previewd db refresh-template` does it on demand. Needs
	// template.
	RefreshTemplate *TemplateRefresh `yaml:"refreshTemplate"`
	// Seed is an SQL file in the application's repository (a path relative
	// to its root, read at the environment's commit) that runs after
	// migrate in every fresh preview database (a new one, and on reset-db),
	// as the environment's role, in one transaction. Never in production.
	// Empty: no seed. Default empty.
	Seed string `yaml:"seed"`

	// secretWritten is set by Parse when the file gives passwordSecret a
	// value, so that one which expands to empty is an error.
	secretWritten bool
}

// TemplateRefresh schedules template refreshes.
type TemplateRefresh struct {
	// Every is the time between refreshes, at least 1m. Required.
	Every Duration `yaml:"every"`
}

func (p *Postgres) setDefaults() {
	if p.Isolation == "" {
		p.Isolation = "schema"
	}
	if p.ConnectionLimit == 0 {
		p.ConnectionLimit = 20
	}
}

func (p *Postgres) validate(bad func(field, format string, a ...any)) {
	adminDB := ""
	if p.AdminURL == "" {
		bad("database.postgres.adminURL", "required: a postgres:// URL of a role that may create roles and schemas")
	} else if db, err := checkPostgresURL(p.AdminURL); err != nil {
		bad("database.postgres.adminURL", "%v", err)
	} else {
		adminDB = db
	}
	if p.ProductionURL != "" {
		if _, err := checkPostgresURL(p.ProductionURL); err != nil {
			bad("database.postgres.productionURL", "%v", err)
		}
	}
	switch p.Isolation {
	case "schema", "database":
	default:
		bad("database.postgres.isolation", "unknown value %q; want schema or database", p.Isolation)
	}
	if p.AdminPooled && p.Isolation == "database" {
		bad("database.postgres.adminPooled", "true needs isolation schema: isolation database holds a session advisory lock around CREATE and DROP DATABASE, which a transaction pooler does not keep; point adminURL at PostgreSQL itself (appHost may stay the pooler)")
	}
	if p.AllowCreateSchema && p.Isolation == "database" {
		bad("database.postgres.allowCreateSchema", "true needs isolation schema: with isolation database each preview role owns its database and may already create schemas in it; remove the field")
	}
	if p.Isolation == "database" && p.Template != "" && p.Template == adminDB {
		bad("database.postgres.template", "%q is adminURL's database; PostgreSQL cannot clone the database previewd is connected to", p.Template)
	}
	if p.AppHost != "" {
		if err := checkAppHost(p.AppHost); err != nil {
			bad("database.postgres.appHost", "%v", err)
		}
	}
	if p.secretWritten && p.PasswordSecret == "" {
		bad("database.postgres.passwordSecret", "empty once its ${VAR} is expanded; an empty secret would fall back to a random one in dataDir, "+
			"and serve and db create would give the same environment different passwords; set the variable, or remove the field")
	}
	if p.Seed != "" {
		if err := checkRepoFile(p.Seed); err != nil {
			bad("database.postgres.seed", "%v", err)
		}
	}
	if p.ConnectionLimit < 1 {
		bad("database.postgres.connectionLimit", "%d is out of range; want at least 1", p.ConnectionLimit)
	}
	p.validateRefresh(adminDB, bad)
}

// validateRefresh checks masking and refreshTemplate.
func (p *Postgres) validateRefresh(adminDB string, bad func(field, format string, a ...any)) {
	for col, expr := range p.Masking {
		if err := checkMaskColumn(col); err != nil {
			bad("database.postgres.masking", "%q: %v", col, err)
		}
		if strings.TrimSpace(expr) == "" {
			bad("database.postgres.masking", "%q: empty expression; want SQL such as \"'user' || id || '@example.com'\"", col)
		}
	}
	if len(p.Masking) == 0 && p.RefreshTemplate == nil {
		return
	}
	field := "database.postgres.masking"
	if p.RefreshTemplate != nil {
		field = "database.postgres.refreshTemplate"
		if d := p.RefreshTemplate.Every.Duration; d < time.Minute {
			bad("database.postgres.refreshTemplate.every", "%s is out of range; want at least 1m", d)
		}
	}
	source := adminDB
	if p.ProductionURL != "" {
		db, err := checkPostgresURL(p.ProductionURL)
		if err != nil {
			return // reported above
		}
		source = db
	}
	switch {
	case p.Template == "":
		bad(field, "needs database.postgres.template: the database refreshed from production and cloned for previews")
	case source == "":
		bad(field, "needs a production database to copy from: set productionURL, or name a database in adminURL")
	case p.Template == source:
		bad("database.postgres.template", "%q is production's database; the template is refreshed by replacing it", p.Template)
	case p.Template == adminDB:
		bad("database.postgres.template", "%q is adminURL's database; the template is refreshed by replacing it", p.Template)
	}
}

// checkMaskColumn accepts "table.column" and "schema.table.column", each
// part a plain name (letters, digits, _ and $, not starting with a digit
// or $).
func checkMaskColumn(s string) error {
	parts := strings.Split(s, ".")
	if len(parts) != 2 && len(parts) != 3 {
		return errors.New("want table.column or schema.table.column")
	}
	for _, part := range parts {
		if part == "" || len(part) > 63 {
			return fmt.Errorf("%q: want a name of 1 to 63 bytes", part)
		}
		for i, c := range part {
			ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 || i > 0 && (c == '$' || c >= '0' && c <= '9')
			if !ok {
				return fmt.Errorf("%q: want letters, digits, _ and $ (quoted names are not supported)", part)
			}
		}
	}
	return nil
}

// AdminForProduction reports whether production gets the admin role:
// kind postgres without database.postgres.productionURL.
func (c *Config) AdminForProduction() bool {
	return c.Database.Kind == "postgres" && c.Database.Postgres.ProductionURL == ""
}

// checkAdminForProduction is CheckExposure's rule for production's
// database role: beyond loopback, production may not get the admin role
// unless database.postgres.allowAdminForProduction says so.
func (c *Config) checkAdminForProduction() *FieldError {
	if !c.AdminForProduction() || c.Database.Postgres.AllowAdminForProduction || Loopback(c.Listen) {
		return nil
	}
	return &FieldError{Field: "database.postgres.productionURL", Msg: fmt.Sprintf("required: listen %q is reachable from other machines and "+
		"production would connect as adminURL's role, which may create and drop every preview's role and database; "+
		"give production its own role, or set database.postgres.allowAdminForProduction: true to serve it as admin on purpose", c.Listen)}
}

// Warnings are what a valid config does that its operator should know:
// validate prints them and serve logs them at start. They never hold a
// secret.
func (c *Config) Warnings() []string {
	var ws []string
	// Beyond loopback, CheckExposure refuses it instead.
	if c.AdminForProduction() && !c.Database.Postgres.AllowAdminForProduction && Loopback(c.Listen) {
		ws = append(ws, "database.postgres.productionURL: not set, so production connects as adminURL's role "+
			"(it may create and drop every preview's role and database); give production its own role, "+
			"or set database.postgres.allowAdminForProduction: true; serve refuses this on a listen beyond loopback")
	}
	return ws
}

// checkPostgresURL checks a postgres:// (or postgresql://) URL, or a
// keyword/value connection string, without echoing it (it may hold a
// password), and returns the URL's database name if it has one.
func checkPostgresURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		if !strings.Contains(s, "=") {
			return "", errors.New("not a postgres:// URL or a keyword=value connection string")
		}
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the URL; do not repeat the password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("not a valid URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", fmt.Errorf("scheme %q: want postgres://", u.Scheme)
	}
	return strings.TrimPrefix(u.Path, "/"), nil
}

// checkRepoFile accepts a relative path inside a repository, without "..".
func checkRepoFile(s string) error {
	slashed := filepath.ToSlash(s)
	switch {
	case strings.HasPrefix(slashed, "/") || filepath.IsAbs(s):
		return fmt.Errorf("%q is absolute; want a path relative to the repository's root", s)
	case slices.Contains(strings.Split(slashed, "/"), ".."):
		return fmt.Errorf("%q has a \"..\" element; want a path inside the repository", s)
	case !filepath.IsLocal(s) || filepath.Clean(s) == ".":
		return fmt.Errorf("%q is not a path inside the repository", s)
	}
	return nil
}

// checkAppHost accepts host or host:port.
func checkAppHost(s string) error {
	host, bad := s, "/@?#: "
	if h, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q has a bad port; want host or host:port", s)
		}
		host, bad = h, "/@?# " // h may be an IPv6 address
	}
	if host == "" || strings.ContainsAny(host, bad) {
		return fmt.Errorf("%q is not host or host:port (no scheme, user or path)", s)
	}
	return nil
}
