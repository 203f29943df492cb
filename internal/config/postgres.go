package config

// Postgres configures the postgres database provider: each environment
// gets its own role and either its own schema or its own database.
type Postgres struct {
	// AdminURL is how previewd connects to do its own work (create roles,
	// schemas, databases). Required. Use ${VAR} for the password.
	AdminURL string `yaml:"adminURL"`
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
	// ProductionURL is the DATABASE_URL given to production. Default: the
	// AdminURL's database and user, with schema public.
	ProductionURL string `yaml:"productionURL"`
	// ConnectionLimit is each environment role's connection limit.
	// Default 20.
	ConnectionLimit int `yaml:"connectionLimit"`
	// PasswordSecret derives each environment role's password (HMAC), so
	// that creating a database twice, from serve or from a CI job, gives
	// the same working URL. Default: a random secret kept in dataDir.
	PasswordSecret string `yaml:"passwordSecret"`
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
	if p.AdminURL == "" {
		bad("database.postgres.adminURL", "required: a postgres:// URL of a role that may create roles and schemas")
	}
	switch p.Isolation {
	case "schema", "database":
	default:
		bad("database.postgres.isolation", "unknown value %q; want schema or database", p.Isolation)
	}
	if p.ConnectionLimit < 1 {
		bad("database.postgres.connectionLimit", "%d is out of range; want at least 1", p.ConnectionLimit)
	}
}
