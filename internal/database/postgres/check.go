package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// probeKeyPrefix starts the key of the role and schema CheckPooling makes.
// The key ends in 8 random hex digits, which a branch's own key never does
// (env.BranchKey hashes such names), so it is no environment's; its objects
// carry this instance's marker without an owner, so Collect removes them
// if a crash leaves them behind.
const probeKeyPrefix = "previewd-check-"

// PoolingCheck is what CheckPooling found.
type PoolingCheck struct {
	// Leak is set when session state set by one client was seen by the
	// next client of the same role at appHost.
	Leak bool
	// Pooled is set when the two probe connections at appHost shared one
	// server session: a pooler is in front of PostgreSQL.
	Pooled bool
	// Message says what was seen and, for a leak, the fix.
	Message string
	// AdminWarning, if not empty, says that adminURL looks pooled but
	// AdminPooled is off.
	AdminWarning string
}

// sessions is what two probe connections at one address saw, one after
// the other, the first having run SET search_path TO public.
type sessions struct {
	address               string
	firstPID, secondPID   int32
	before, after         string // search_path on the first (before SET) and on the second
	bouncer               string // SHOW VERSION of PgBouncer's admin console; "" if unknown
	adminSame             bool   // two admin sessions in a row had one server pid
	adminPooledConfigured bool
	databaseIsolation     bool // adminPooled is refused there
}

var bouncerVersionRE = regexp.MustCompile(`PgBouncer (\d+)\.(\d+)`)

// judgePooling decides, from what the probe saw, whether session state
// leaks between clients at appHost and what to tell the operator.
func judgePooling(s sessions) PoolingCheck {
	var c PoolingCheck
	if s.adminSame && !s.adminPooledConfigured {
		c.AdminWarning = "adminURL looks pooled (two sessions in a row got the same server session); " +
			"if it goes through PgBouncer in transaction mode, set database.postgres.adminPooled: true, " +
			"or a second previewd process fails with prepared statement \"stmtcache_…\" already exists"
	}
	if s.adminSame && s.databaseIsolation {
		c.AdminWarning = "adminURL looks pooled (two sessions in a row got the same server session); " +
			"isolation database needs adminURL to reach PostgreSQL itself: its session advisory lock around CREATE and DROP DATABASE " +
			"is not kept by a transaction pooler (appHost may stay the pooler)"
	}
	if s.firstPID != s.secondPID && s.bouncer != "" {
		c.Pooled = true
		c.Message = fmt.Sprintf("%s: %s answered, but the second connection got another server session, so the leak could not be tested; run the check again when the pool is idle", s.address, s.bouncer)
		return c
	}
	if s.firstPID != s.secondPID {
		c.Message = fmt.Sprintf("%s: direct connection, no pooler (each connection got its own server session)", s.address)
		return c
	}
	c.Pooled = true
	version := "a pooler"
	if s.bouncer != "" {
		version = s.bouncer
	}
	if s.after == s.before {
		c.Message = fmt.Sprintf("%s: pooled by %s; session state is reset between clients (search_path stayed %s)", s.address, version, s.before)
		return c
	}
	c.Leak = true
	fix := "set server_reset_query_always = 1 (with server_reset_query = DISCARD ALL) in pgbouncer.ini, " +
		"or track_extra_parameters = search_path on PgBouncer 1.20 or later"
	if m := bouncerVersionRE.FindStringSubmatch(s.bouncer); m != nil {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		if major == 1 && minor < 20 {
			fix = "set server_reset_query_always = 1 (with server_reset_query = DISCARD ALL) in pgbouncer.ini " +
				"(track_extra_parameters = search_path needs PgBouncer 1.20 or later; this is " + s.bouncer + ")"
		}
	}
	c.Message = fmt.Sprintf("%s: session state leaks between clients of one role: after one client ran SET search_path TO public, "+
		"the next got the same server session (pid %d) with search_path %s instead of %s, so an app whose migrator ends that way "+
		"sends the next environment's queries to public; %s", s.address, s.secondPID, s.after, s.before, fix)
	return c
}

// CheckPooling probes appHost for session state that leaks between the
// clients of one role (PgBouncer in transaction mode runs no reset query by
// default). It makes a short-lived role with its own schema and
// search_path, connects as it through appHost, runs SET search_path TO
// public and disconnects, then connects again and looks at search_path.
// The role and schema are dropped before it returns (Collect removes them
// after a crash). It also looks whether adminURL is pooled.
func (p *Provider) CheckPooling(ctx context.Context) (PoolingCheck, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return PoolingCheck{}, err
	}
	key := probeKeyPrefix + hex.EncodeToString(b)
	name, err := Name(key)
	if err != nil {
		return PoolingCheck{}, err
	}
	if err := p.ensureSchemaMarked(ctx, key, name, mark{key: key, instance: p.instance}.String()); err != nil {
		return PoolingCheck{}, fmt.Errorf("postgres: making the probe role: %w", err)
	}
	defer func() {
		dctx, cancel := cleanupContext(ctx)
		defer cancel()
		if err := p.dropRoleAndSchema(dctx, key, name, true, true); err != nil {
			p.log.Warn("dropping the probe role failed; collection removes it", "role", name, "err", err)
		}
	}()
	s := sessions{address: p.appHost, adminPooledConfigured: p.pooled, databaseIsolation: p.isolation == IsolationDatabase, bouncer: p.bouncerVersion(ctx)}
	app, err := pgx.ParseConfig(p.conn(name, p.adminDB, name).Vars["DATABASE_URL"])
	if err != nil {
		return PoolingCheck{}, fmt.Errorf("postgres: the probe's URL: %w", err)
	}
	if s.firstPID, s.before, err = session(ctx, app, "SET search_path TO public"); err != nil {
		return PoolingCheck{}, fmt.Errorf("postgres: probing %s: %w", p.appHost, err)
	}
	if s.secondPID, s.after, err = session(ctx, app, ""); err != nil {
		return PoolingCheck{}, fmt.Errorf("postgres: probing %s: %w", p.appHost, err)
	}
	var a, b2 int32
	if a, _, err = session(ctx, p.adminCfg, ""); err == nil {
		b2, _, err = session(ctx, p.adminCfg, "")
	}
	if err != nil {
		return PoolingCheck{}, fmt.Errorf("postgres: probing adminURL: %w", err)
	}
	s.adminSame = a == b2
	return judgePooling(s), nil
}

// session connects with c (simple protocol, which every pooler mode
// keeps), reads its server pid and search_path, runs then if not empty,
// and disconnects.
func session(ctx context.Context, c *pgx.ConnConfig, then string) (int32, string, error) {
	cfg := c.Copy()
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, "", err
	}
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		_ = conn.Close(cctx) // a probe: how it closes does not matter
	}()
	var pid int32
	var path string
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('search_path')").Scan(&pid, &path); err != nil {
		return 0, "", err
	}
	if then != "" {
		if _, err := conn.Exec(ctx, then); err != nil {
			return 0, "", err
		}
	}
	return pid, path, nil
}

// bouncerVersion asks appHost's PgBouncer admin console (database
// pgbouncer, as the admin user) for its version; "" when that is not
// PgBouncer or the admin user may not use its console.
func (p *Provider) bouncerVersion(ctx context.Context) string {
	cfg := p.adminCfg.Copy()
	cfg.Database = "pgbouncer"
	h, port, err := net.SplitHostPort(p.appHost)
	if err != nil {
		return ""
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return ""
	}
	cfg.Host, cfg.Port = h, uint16(n)
	cfg.Fallbacks = nil
	cfg.RuntimeParams = map[string]string{}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return ""
	}
	defer func() { _ = conn.Close(cctx) }()
	res, err := conn.PgConn().Exec(cctx, "SHOW VERSION").ReadAll()
	if err != nil || len(res) == 0 || len(res[0].Rows) == 0 || len(res[0].Rows[0]) == 0 {
		return ""
	}
	return string(res[0].Rows[0][0])
}
