package postgres

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// Isolation modes.
const (
	IsolationSchema   = "schema"
	IsolationDatabase = "database"
)

// ErrForeign is database.ErrForeign: an object with a preview name exists
// but was not made by previewd for that key (it has no matching marker).
var ErrForeign = database.ErrForeign

// Options configure New. Zero values take the defaults named.
type Options struct {
	// AdminURL is how previewd connects to do its own work (create roles,
	// schemas, databases). Required.
	AdminURL string
	// Isolation is IsolationSchema (one schema per environment in the
	// AdminURL's database) or IsolationDatabase (one database per
	// environment, cloned from Template). Default IsolationSchema.
	Isolation string
	// Template is the database cloned for each environment in database
	// isolation. Empty means a new empty database.
	Template string
	// Reference is the database the migration rehearsal clones and
	// RefreshTemplate refreshes: the configured template, also for
	// providers that do not clone it for environments (the schema and
	// empty tiers). Default Template.
	Reference string
	// AppHost, if set (host or host:port, port 5432 by default), is where
	// the DATABASE_URL given to apps points, instead of AdminURL's host.
	AppHost string
	// ProductionURL is the DATABASE_URL given to production. Default: the
	// AdminURL's database and user, at AppHost, with schema public.
	ProductionURL string
	// ConnectionLimit is each environment role's connection limit.
	// Default 20.
	ConnectionLimit int
	// PasswordSecret derives each environment role's password (HMAC), so
	// that every Provider with the same secret gives an environment the
	// same working URL. Required.
	PasswordSecret []byte
	// TemplateWait bounds how long Ensure retries CREATE DATABASE while
	// the template is in use by other sessions. Default 30s.
	TemplateWait time.Duration
	// AdminPooled says AdminURL goes through a connection pooler such as
	// PgBouncer in transaction mode. The admin pool then uses pgx's exec
	// mode (unnamed statements, sent with their parameters in one round
	// trip) instead of its cache of named prepared statements, which a
	// server connection shared by several clients already holds ("prepared
	// statement \"stmtcache_…\" already exists"). IsolationDatabase
	// refuses it: its session advisory lock (withSessionLock) would not
	// be kept by a transaction pooler. Default false.
	AdminPooled bool
	// AllowCreateSchema (schema isolation only) lets apps written for a
	// setup without previewd run unmodified: a migrator that sends
	// CREATE SCHEMA IF NOT EXISTS "<DATABASE_SCHEMA>" on every run fails
	// without it ("permission denied for database"), since PostgreSQL
	// checks CREATE on the database before it looks at IF NOT EXISTS.
	// Each role then gets CREATE on the admin database, which on its own
	// would let a preview create any schema (another environment's name
	// before that environment exists, or one production later adopts with
	// IF NOT EXISTS), rename its own, install trusted extensions and
	// create publications. So before granting it, Ensure installs an
	// event trigger (see createschema.go; it needs a superuser adminURL,
	// and Ensure fails with a clear error otherwise) that refuses all of
	// that for preview roles: a preview may create only its own schema
	// (so IF NOT EXISTS of it is a no-op, and one it dropped it may make
	// again, marked as its own). The trade-off: preview roles hold a
	// database privilege whose limits rest on that trigger (a superuser
	// could disable it), extensions the app creates must exist already,
	// and previewd keeps a schema "previewd" (the trigger's function) in
	// the admin database. Turned off again, Ensure revokes the privilege.
	// IsolationDatabase refuses it. Default false.
	AllowCreateSchema bool
	// MaxConns is the admin connection pool's size. Default 8.
	MaxConns int32
	// Masking maps "table.column" (schema public) or "schema.table.column"
	// to the SQL expression RefreshTemplate replaces its values with in
	// the template (config database.postgres.masking).
	Masking map[string]string
	// Instance is written into the marker of every object made, and
	// Collect only collects objects that carry it (see config.Instance).
	// Empty marks objects as a previewd before instances did, and
	// collects only those: the daemon always sets it.
	Instance string
	// Owner is OwnerCLI for `previewd db`: its objects are marked as the
	// CLI's, which a provider without it (serve) never collects or drops.
	// Empty for serve.
	Owner string
	// Logger receives retries and drops. Default: nowhere.
	Logger *slog.Logger
	// Hook, if set (a test seam), runs at the named stages of Ensure, so a
	// test can simulate a crash there: "schema-tx" (schema mode,
	// everything made but not committed), "role" (database mode, role
	// committed, no database yet), "database" (database made, not yet
	// finished and marked). An error it returns is Ensure's.
	Hook func(ctx context.Context, stage, name string) error
}

// Provider gives environments PostgreSQL roles and schemas or databases.
// It is safe for concurrent use.
type Provider struct {
	isolation string
	template  string
	reference string // Options.Reference
	connLimit int
	secret    []byte
	wait      time.Duration
	log       *slog.Logger
	instance  string // Options.Instance
	owner     string // Options.Owner

	pool        *pgxpool.Pool
	adminCfg    *pgx.ConnConfig
	pooled      bool // Options.AdminPooled
	allowCreate bool // Options.AllowCreateSchema
	adminDB     string
	adminUser   string
	appHost     string // host:port in DATABASE_URL
	sslmode     string

	prodURL  string
	prodDB   string
	prodUser string

	verifiers sync.Map // role -> SCRAM verifier

	// strategy is CREATE DATABASE's STRATEGY when cloning a template on
	// PostgreSQL 15 or later: FILE_COPY, one server-side copy of the
	// files, is much faster for a large template than WAL_LOG (the
	// default), which writes every page to the WAL (see
	// BenchmarkCloneTemplate200k).
	strategy string

	hook func(ctx context.Context, stage, name string) error // Options.Hook

	// noStatements makes Rehearse sample only, as on a server without
	// pg_stat_statements (a test seam).
	noStatements bool
	masking      map[string]string // Options.Masking
	closeAfter   int               // see swapDatabase; a test seam
}

func (p *Provider) runHook(ctx context.Context, stage, name string) error {
	if p.hook == nil {
		return nil
	}
	return p.hook(ctx, stage, name)
}

var (
	_ database.Provider  = (*Provider)(nil)
	_ database.Collector = (*Provider)(nil)
)

// New returns a provider for o. It does not connect: the admin pool
// connects on first use, so a provider is cheap to make in a CLI.
func New(ctx context.Context, o Options) (*Provider, error) {
	p := &Provider{
		isolation:   o.Isolation,
		template:    o.Template,
		connLimit:   o.ConnectionLimit,
		secret:      append([]byte(nil), o.PasswordSecret...),
		wait:        o.TemplateWait,
		log:         o.Logger,
		prodURL:     o.ProductionURL,
		strategy:    "FILE_COPY",
		hook:        o.Hook,
		instance:    o.Instance,
		owner:       o.Owner,
		pooled:      o.AdminPooled,
		allowCreate: o.AllowCreateSchema,
		masking:     maps.Clone(o.Masking),
		reference:   cmp.Or(o.Reference, o.Template),
		closeAfter:  closeAfter,
	}
	if p.isolation == "" {
		p.isolation = IsolationSchema
	}
	if p.connLimit == 0 {
		p.connLimit = 20
	}
	if p.wait == 0 {
		p.wait = 30 * time.Second
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	maxConns := o.MaxConns
	if maxConns == 0 {
		maxConns = 8
	}
	switch {
	case p.isolation != IsolationSchema && p.isolation != IsolationDatabase:
		return nil, fmt.Errorf("postgres: Isolation %q: want schema or database", p.isolation)
	case p.connLimit < 1:
		return nil, fmt.Errorf("postgres: ConnectionLimit %d: want at least 1", p.connLimit)
	case maxConns < 1:
		return nil, fmt.Errorf("postgres: MaxConns %d: want at least 1", maxConns)
	case o.AdminPooled && p.isolation == IsolationDatabase:
		return nil, errors.New("postgres: AdminPooled needs schema isolation: database isolation holds a session advisory lock around CREATE and DROP DATABASE, which a transaction pooler does not keep")
	case o.AllowCreateSchema && p.isolation == IsolationDatabase:
		return nil, errors.New("postgres: AllowCreateSchema needs schema isolation: in database isolation each role owns its database and may already create schemas in it")
	case o.Owner != "" && o.Owner != OwnerCLI:
		return nil, fmt.Errorf("postgres: Owner %q: want empty or %s", o.Owner, OwnerCLI)
	case checkLiteral(o.Instance) != nil || strings.ContainsAny(o.Instance, "/="):
		return nil, fmt.Errorf("postgres: Instance %q: want a DNS label", o.Instance)
	case maskingErr(o.Masking) != nil:
		return nil, maskingErr(o.Masking)
	case len(p.secret) == 0:
		return nil, errors.New("postgres: PasswordSecret is required")
	case o.AdminURL == "":
		return nil, errors.New("postgres: AdminURL is required")
	}
	pc, err := pgxpool.ParseConfig(o.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("postgres: AdminURL: %w", err)
	}
	pc.MaxConns = maxConns
	pc.MinConns = 0
	if o.AdminPooled {
		pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "previewd"
	}
	p.adminCfg = pc.ConnConfig.Copy()
	p.adminDB, p.adminUser = pc.ConnConfig.Database, pc.ConnConfig.User
	if p.adminDB == "" {
		p.adminDB = p.adminUser
	}
	if p.isolation == IsolationDatabase && p.template != "" && p.template == p.adminDB {
		return nil, fmt.Errorf("postgres: Template %q is the AdminURL's database; PostgreSQL cannot clone a database previewd is connected to", p.template)
	}
	if u, err := url.Parse(o.AdminURL); err == nil {
		p.sslmode = u.Query().Get("sslmode")
	}
	p.appHost = net.JoinHostPort(pc.ConnConfig.Host, strconv.Itoa(int(pc.ConnConfig.Port)))
	if o.AppHost != "" {
		h, port, err := net.SplitHostPort(o.AppHost)
		if err != nil {
			h, port = o.AppHost, "5432"
		}
		if h == "" || strings.ContainsAny(h, "/@?# ") {
			return nil, fmt.Errorf("postgres: AppHost %q: want host or host:port", o.AppHost)
		}
		p.appHost = net.JoinHostPort(h, port)
	}
	p.prodDB, p.prodUser = p.adminDB, p.adminUser
	if o.ProductionURL != "" {
		c, err := pgconn.ParseConfig(o.ProductionURL)
		if err != nil {
			return nil, fmt.Errorf("postgres: ProductionURL: %w", err)
		}
		p.prodDB, p.prodUser = c.Database, c.User
	}
	if p.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return p, nil
}

// Close closes the admin connections.
func (p *Provider) Close() { p.pool.Close() }

// Isolation returns schema or database.
func (p *Provider) Isolation() string { return p.isolation }

// itemData is what an inventory item records besides its name.
type itemData struct {
	// Database is where a schema lives (the admin database when it was
	// made).
	Database string `json:"database,omitempty"`
}

// Items implements database.Provider: the role and the schema or database
// Ensure makes for t. It returns nothing for production and for keys Ensure
// would refuse.
func (p *Provider) Items(t database.Target) []env.Item {
	if isProduction(t) {
		return nil
	}
	name, err := p.previewName(t.Key)
	if err != nil {
		return nil
	}
	role := env.Item{Kind: env.ItemRole, Name: name}
	if p.isolation == IsolationDatabase {
		return []env.Item{role, {Kind: env.ItemDatabase, Name: name}}
	}
	data, _ := json.Marshal(itemData{Database: p.adminDB})
	return []env.Item{role, {Kind: env.ItemSchema, Name: name, Data: data}}
}

func isProduction(t database.Target) bool { return t.Production || t.Key == env.ProductionKey }

// previewName returns key's name, refusing keys and names Ensure must not
// touch. It runs no SQL.
func (p *Provider) previewName(key string) (string, error) {
	name, err := Name(key)
	if err != nil {
		return "", err
	}
	if err := p.checkOwned(name); err != nil {
		return "", err
	}
	return name, nil
}

// checkOwned returns an error wrapping database.ErrProduction unless name
// is a name previewd makes and none of production's (its database and
// user, the admin database and user, the template) or the server's
// reserved names.
func (p *Provider) checkOwned(name string) error {
	key, _, ok := ownerKey(name)
	switch {
	case !ok:
		return fmt.Errorf("%w: %q is not a %s name", database.ErrProduction, name, Prefix)
	case key == env.ProductionKey,
		name == p.prodDB, name == p.prodUser, name == p.adminDB, name == p.adminUser,
		name == p.template, name == p.reference, name == "public", name == "information_schema",
		strings.HasPrefix(name, "pg_"), name == "template0", name == "template1", name == "postgres":
		return fmt.Errorf("%w: %q is production's or the server's", database.ErrProduction, name)
	}
	return nil
}

// Ensure implements database.Provider. For production it creates nothing
// and returns productionURL (or the admin URL's database and user) with
// schema public.
func (p *Provider) Ensure(ctx context.Context, t database.Target) (database.Conn, error) {
	if isProduction(t) {
		return p.production()
	}
	name, err := p.previewName(t.Key)
	if err != nil {
		return database.Conn{}, err
	}
	if p.isolation == IsolationDatabase {
		if err := p.ensureDatabase(ctx, t.Key, name); err != nil {
			return database.Conn{}, err
		}
		return p.conn(name, name, "public"), nil
	}
	if err := p.ensureSchema(ctx, t.Key, name); err != nil {
		return database.Conn{}, err
	}
	return p.conn(name, p.adminDB, name), nil
}

// conn returns the variables for role in db.
func (p *Provider) conn(role, db, schema string) database.Conn {
	pw := password(p.secret, role)
	u := url.URL{Scheme: "postgres", User: url.UserPassword(role, pw), Host: p.appHost, Path: "/" + db}
	if p.sslmode != "" {
		u.RawQuery = url.Values{"sslmode": {p.sslmode}}.Encode()
	}
	name := schema
	if p.isolation == IsolationDatabase {
		name = db
	}
	return database.Conn{
		Vars: map[string]string{"DATABASE_URL": u.String(), "DATABASE_SCHEMA": schema},
		Name: name,
	}
}

// production returns production's variables: productionURL, or the admin
// URL's user and database at appHost (if set).
func (p *Provider) production() (database.Conn, error) {
	if p.prodURL != "" {
		return database.Conn{
			Vars: map[string]string{"DATABASE_URL": p.prodURL, "DATABASE_SCHEMA": "public"},
			Name: p.prodDB,
		}, nil
	}
	c := p.adminCfg
	u := url.URL{Scheme: "postgres", User: url.UserPassword(c.User, c.Password), Host: p.appHost, Path: "/" + p.adminDB}
	if c.Password == "" {
		u.User = url.User(c.User)
	}
	if p.sslmode != "" {
		u.RawQuery = url.Values{"sslmode": {p.sslmode}}.Encode()
	}
	return database.Conn{
		Vars: map[string]string{"DATABASE_URL": u.String(), "DATABASE_SCHEMA": "public"},
		Name: p.adminDB,
	}, nil
}

// cleanupTimeout bounds the statements that clean up after work done under
// a context (rollback, unlock, closing a session). They run even when that
// context has ended, so a cancelled Ensure leaves no open transaction or
// held lock behind.
const cleanupTimeout = 5 * time.Second

// cleanupContext returns the context for cleaning up after work done under
// ctx: ctx's values without its cancellation, bounded by cleanupTimeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// rollback rolls tx back unless it was committed; for a defer.
func (p *Provider) rollback(ctx context.Context, tx pgx.Tx) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := tx.Rollback(cctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		// pgx closes a session whose rollback failed.
		p.log.Warn("rollback failed", "err", err)
	}
}

// closeConn closes a session; for a defer.
func (p *Provider) closeConn(ctx context.Context, conn *pgx.Conn) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if err := conn.Close(cctx); err != nil {
		p.log.Warn("closing a session failed", "err", err)
	}
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// lockClass is the first key of previewd's advisory locks ("prev").
const lockClass = 0x70726576

// lockID returns the second advisory lock key for name; 0 is the global
// lock that serializes updates of a database's ACL.
func lockID(name string) int32 {
	s := sha256.Sum256([]byte(name))
	id := int32(binary.BigEndian.Uint32(s[:4]))
	if id == 0 {
		id = 1
	}
	return id
}

// sqlGlobalLock serializes statements that rewrite the admin database's
// pg_database row (GRANT/REVOKE CONNECT, DROP OWNED), which concurrent
// transactions would otherwise fail with "tuple concurrently updated".
var sqlGlobalLock = fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, 0);\n", lockClass)

// state is what exists of one environment's objects.
type state struct {
	roleExists    bool
	roleComment   string
	schemaExists  bool
	schemaComment string
	schemaOwner   string
	connectGrant  bool // the role has an explicit CONNECT on the admin database
	createGrant   bool // the role has CREATE on the admin database (AllowCreateSchema)
	adminSuper    bool // previewd's own role is a superuser
}

const sqlInspect = `SELECT
  r.oid IS NOT NULL, COALESCE(shobj_description(r.oid, 'pg_authid'), ''),
  n.oid IS NOT NULL, COALESCE(obj_description(n.oid, 'pg_namespace'), ''), COALESCE(pg_get_userbyid(n.nspowner), ''),
  EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
          WHERE d.datname = current_database() AND a.grantee = r.oid AND a.privilege_type = 'CONNECT'),
  EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
          WHERE d.datname = current_database() AND a.grantee = r.oid AND a.privilege_type = 'CREATE'),
  (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
FROM (SELECT $1::text AS name) q
LEFT JOIN pg_roles r ON r.rolname = q.name
LEFT JOIN pg_namespace n ON n.nspname = q.name`

func inspect(ctx context.Context, q pgx.Tx, name string) (state, error) {
	var s state
	err := q.QueryRow(ctx, sqlInspect, name).Scan(&s.roleExists, &s.roleComment, &s.schemaExists, &s.schemaComment, &s.schemaOwner, &s.connectGrant, &s.createGrant, &s.adminSuper)
	return s, err
}

func lockName(ctx context.Context, tx pgx.Tx, name string) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", int32(lockClass), lockID(name))
	return err
}

func (p *Provider) verifier(role string) (string, error) {
	if v, ok := p.verifiers.Load(role); ok {
		return v.(string), nil
	}
	v, err := scramVerifier(p.secret, role, password(p.secret, role))
	if err != nil {
		return "", err
	}
	p.verifiers.Store(role, v)
	return v, nil
}

// roleSQL returns the statements that create (or repair) the role and
// mark it with m, and their literal arguments.
func (p *Provider) roleSQL(key, name string, s state, m string) (string, []any, error) {
	if s.roleExists && !p.ours(key, s.roleComment) {
		return "", nil, fmt.Errorf("postgres: role %q %w (comment %q)", name, ErrForeign, s.roleComment)
	}
	v, err := p.verifier(name)
	if err != nil {
		return "", nil, err
	}
	if err := errors.Join(checkLiteral(v), checkLiteral(m)); err != nil {
		return "", nil, err
	}
	r := ident(name)
	var b strings.Builder
	if !s.roleExists {
		fmt.Fprintf(&b, "CREATE ROLE %s WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %d PASSWORD $1;\n", r, p.connLimit)
		fmt.Fprintf(&b, "COMMENT ON ROLE %s IS $2;\n", r)
	} else {
		// Repair what a person may have changed. SUPERUSER, REPLICATION
		// and BYPASSRLS can only be granted by a superuser, and previewd
		// never does; the verifier is the same as before, so this does not
		// disturb connections PgBouncer holds.
		fmt.Fprintf(&b, "ALTER ROLE %s WITH LOGIN NOCREATEDB NOCREATEROLE NOINHERIT CONNECTION LIMIT %d PASSWORD $1;\n", r, p.connLimit)
		fmt.Fprintf(&b, "COMMENT ON ROLE %s IS $2;\n", r)
	}
	if !s.adminSuper {
		// A non-superuser admin (CREATEROLE, CREATEDB) must be a member
		// of the role to make it the owner of a schema or database.
		fmt.Fprintf(&b, "GRANT %s TO CURRENT_USER;\n", r)
	}
	return b.String(), []any{pgx.QueryExecModeSimpleProtocol, v, m}, nil
}

// Drop implements database.Provider. It drops databases, then schemas,
// then roles (after DROP OWNED), each with IF EXISTS, so it can be called
// again after a crash to finish. It refuses, with database.ErrProduction,
// every item that is not a preview name or is one of production's, and
// with ErrForeign every existing object without previewd's marker.
//
// Each environment's items go on their own, so one that cannot be dropped
// does not keep the others. What is left is named by a
// *database.LeftError: refused items, and of an environment whose drop
// failed, what that step would have dropped and what comes after it (a
// role is kept with the database it owns).
func (p *Provider) Drop(ctx context.Context, items []env.Item) error {
	byName := map[string]*dropSet{}
	var left []env.Item
	var errs []error
	for _, it := range items {
		switch it.Kind {
		case env.ItemRole, env.ItemSchema, env.ItemDatabase:
		default:
			continue
		}
		if err := p.checkOwned(it.Name); err != nil {
			errs = append(errs, fmt.Errorf("postgres: refusing to drop %s: %w", it.Kind, err))
			left = append(left, it)
			continue
		}
		d := byName[it.Name]
		if d == nil {
			d = &dropSet{}
			byName[it.Name] = d
		}
		d.add(it)
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sortAuxFirst(names)
	for _, name := range names {
		d := byName[name]
		if l, err := p.dropOne(ctx, name, d); err != nil {
			errs = append(errs, err)
			left = append(left, l...)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &database.LeftError{Items: left, Err: errors.Join(errs...)}
}

// sortAuxFirst sorts names, auxiliary objects' first: the environment's
// role owns its auxiliary databases, so they go before it.
func sortAuxFirst(names []string) {
	sort.Slice(names, func(i, j int) bool {
		ai, aj := strings.Contains(names[i], "$"), strings.Contains(names[j], "$")
		if ai != aj {
			return ai
		}
		return names[i] < names[j]
	})
}

// dropSet is what Drop was asked to drop of one name.
type dropSet struct {
	items            []env.Item
	role, schema, db bool
	schemaDB         string // where the schema lives; "" for the admin database
}

func (d *dropSet) add(it env.Item) {
	d.items = append(d.items, it)
	switch it.Kind {
	case env.ItemRole:
		d.role = true
	case env.ItemDatabase:
		d.db = true
	case env.ItemSchema:
		d.schema = true
		var data itemData
		if len(it.Data) > 0 && json.Unmarshal(it.Data, &data) == nil {
			d.schemaDB = data.Database
		}
	}
}

// of returns d's items of the given kinds.
func (d *dropSet) of(kinds ...env.ItemKind) []env.Item {
	var out []env.Item
	for _, it := range d.items {
		if slices.Contains(kinds, it.Kind) {
			out = append(out, it)
		}
	}
	return out
}

// dropOne drops d's database, then a schema in another database, then the
// role and a schema in the admin database. When a step fails it stops and
// returns, with the error, d's items that may still exist.
func (p *Provider) dropOne(ctx context.Context, name string, d *dropSet) ([]env.Item, error) {
	key, _, _ := ownerKey(name)
	if d.db {
		if err := p.dropDatabase(ctx, key, name); err != nil {
			return d.items, err // the role owns the database: keep it too
		}
	}
	here := d.schema && (d.schemaDB == "" || d.schemaDB == p.adminDB)
	if d.schema && !here {
		if err := p.dropSchemaIn(ctx, d.schemaDB, key, name); err != nil {
			return d.of(env.ItemSchema, env.ItemRole), err
		}
	}
	if d.role || here {
		if err := p.dropRoleAndSchema(ctx, key, name, d.role, here); err != nil {
			// One transaction: the role and this schema are both still
			// there.
			if here {
				return d.of(env.ItemRole, env.ItemSchema), err
			}
			return d.of(env.ItemRole), err
		}
	}
	return nil, nil
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// major returns the server's major version.
func major(c *pgconn.PgConn) int {
	v := c.ParameterStatus("server_version")
	if i := strings.IndexAny(v, ". "); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}
