package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

var _ database.Rehearser = (*Provider)(nil)

// RehearsalItems implements database.Rehearser: the rehearsal database,
// Name(key)$rehearsal.
func (p *Provider) RehearsalItems(t database.Target) []env.Item {
	if isProduction(t) {
		return nil
	}
	name, err := AuxName(t.Key, AuxRehearsal)
	if err != nil || p.checkOwned(name) != nil {
		return nil
	}
	return []env.Item{{Kind: env.ItemDatabase, Name: name}}
}

// Rehearse implements database.Rehearser.
//
// The rehearsal database is a clone of the template (Options.Reference)
// when there is one
// (CREATE DATABASE … TEMPLATE, as database isolation clones), or else an
// empty database given a schema-only copy of production read from the
// catalog (CopyDatabase; the rows of migration bookkeeping tables are
// copied too, so the tool applies only the PR's new migrations). In
// schema isolation the reference's public schema is renamed to the
// environment's schema, which its role's search_path names. Its objects
// are given to the environment's role, and the migrations run as that
// role, connected to the server directly (not through appHost: a pooler's
// server connection would keep the session's statistics from being
// flushed), with lock_timeout and statement_timeout set on the database.
//
// While they run, pg_stat_activity and pg_locks are sampled every
// o.Sample: the statements seen running and for how long, the strongest
// lock seen on each existing table and for how long, and what a waiting
// statement waited for. When the server preloads pg_stat_statements, the
// rehearsal database gets the extension and every statement's time and
// rows come from it (statements shorter than the sampling interval
// included), with the lock each statement's kind takes. Afterwards the
// catalog is compared with what it was: tables rewritten (relfilenode
// changed), tables and columns dropped, NOT NULL and type changes on
// tables with rows, and the rows each table's statistics say were
// inserted, updated or deleted.
func (p *Provider) Rehearse(ctx context.Context, t database.Target, o database.RehearseOptions, migrate func(context.Context, database.Conn) error) (env.Rehearsal, error) {
	if isProduction(t) {
		return env.Rehearsal{}, fmt.Errorf("%w: production's migrations are not rehearsed", database.ErrProduction)
	}
	base, err := p.previewName(t.Key)
	if err != nil {
		return env.Rehearsal{}, err
	}
	name, err := AuxName(t.Key, AuxRehearsal)
	if err != nil {
		return env.Rehearsal{}, err
	}
	if err := p.checkOwned(name); err != nil {
		return env.Rehearsal{}, err
	}
	if o.Sample <= 0 {
		o.Sample = 5 * time.Millisecond
	}
	rep := env.Rehearsal{Engine: "postgres", StatementCount: -1, At: time.Now().UTC()}
	// Whatever happens, the rehearsal database goes.
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := p.dropDatabase(dctx, t.Key, name); derr != nil {
			err = errors.Join(err, fmt.Errorf("postgres: dropping the rehearsal database: %w", derr))
		}
	}()
	schema := "public"
	if p.isolation == IsolationSchema {
		schema = base
	}
	if err := p.makeRehearsal(ctx, t.Key, base, name, schema, o, &rep); err != nil {
		return env.Rehearsal{}, err
	}

	cfg := p.adminCfg.Copy()
	cfg.Database = name
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return env.Rehearsal{}, fmt.Errorf("postgres: connecting to %s: %w", name, err)
	}
	defer p.closeConn(ctx, admin)
	statements := p.prepareStatements(ctx, admin)
	before, err := snapshot(ctx, admin, schema)
	if err != nil {
		return env.Rehearsal{}, fmt.Errorf("postgres: reading the rehearsal's catalog: %w", err)
	}
	sampler, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return env.Rehearsal{}, fmt.Errorf("postgres: connecting to %s: %w", name, err)
	}
	defer p.closeConn(ctx, sampler)

	s := &samples{tables: map[uint32]*lockSeen{}, stmts: map[stmtKey]*env.RehearsalStatement{}}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.run(sctx, sampler, base, o.Sample) })
	start := time.Now()
	merr := migrate(ctx, p.directConn(base, name, schema))
	took := time.Since(start)
	stop()
	wg.Wait()
	if ctx.Err() != nil {
		return env.Rehearsal{}, ctx.Err()
	}
	rep.Seconds = took.Seconds()
	if merr != nil {
		rep.Error = merr.Error()
	}
	// The migrations' sessions flush their statistics as they end.
	p.awaitSessionsEnd(ctx, admin, base)
	after, err := snapshot(ctx, admin, schema)
	if err != nil {
		return env.Rehearsal{}, fmt.Errorf("postgres: reading the rehearsal's catalog: %w", err)
	}
	var stmts []env.RehearsalStatement
	if statements {
		if stmts, err = readStatements(ctx, admin, base); err != nil {
			p.log.Warn("reading pg_stat_statements failed", "err", err)
			statements = false
		}
	}
	rep.Observed = "locks and running statements sampled every " + o.Sample.String() + " from pg_locks and pg_stat_activity"
	if s.errs > 0 {
		rep.Observed += fmt.Sprintf(" (%d samples failed)", s.errs)
		p.log.Warn("rehearsal samples failed", "env", t.Key, "failed", s.errs)
	}
	if statements {
		rep.Observed = "statements and their times from pg_stat_statements, their locks inferred from each statement's kind; " + rep.Observed
	}
	analyze(&rep, before, after, s, stmts, statements)
	return rep, nil
}

// makeRehearsal creates the rehearsal database, fills it from the
// reference and gives it to the environment's role.
func (p *Provider) makeRehearsal(ctx context.Context, key, base, name, schema string, o database.RehearseOptions, rep *env.Rehearsal) error {
	// A crash's leftover goes first (dropDatabase checks it is ours).
	if err := p.dropDatabase(ctx, key, name); err != nil {
		return err
	}
	err := p.withSessionLock(ctx, name, func(conn *pgxpool.Conn) error {
		// In database isolation the role owns its database, so it owns
		// the rehearsal's too; in schema isolation it owns only its schema.
		owner := base
		if p.isolation == IsolationSchema {
			owner = p.adminUser
		}
		if err := p.createDatabaseFrom(ctx, conn, name, owner, p.reference); err != nil {
			return err
		}
		m := p.marker(key, "")
		if err := checkLiteral(m); err != nil {
			return err
		}
		d := ident(name)
		var b strings.Builder
		b.WriteString("BEGIN;\n")
		fmt.Fprintf(&b, "REVOKE ALL ON DATABASE %s FROM PUBLIC;\n", d)
		fmt.Fprintf(&b, "GRANT CONNECT, TEMPORARY ON DATABASE %s TO %s;\n", d, ident(base))
		if o.LockTimeout > 0 {
			fmt.Fprintf(&b, "ALTER DATABASE %s SET lock_timeout = %d;\n", d, o.LockTimeout.Milliseconds())
		}
		if o.StatementTimeout > 0 {
			fmt.Fprintf(&b, "ALTER DATABASE %s SET statement_timeout = %d;\n", d, o.StatementTimeout.Milliseconds())
		}
		fmt.Fprintf(&b, "COMMENT ON DATABASE %s IS $1;\nCOMMIT;", d)
		if _, err := conn.Exec(ctx, b.String(), pgx.QueryExecModeSimpleProtocol, m); err != nil {
			return fmt.Errorf("postgres: preparing the rehearsal database: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	cfg := p.adminCfg.Copy()
	cfg.Database = name
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: connecting to %s: %w", name, err)
	}
	defer p.closeConn(ctx, c)
	if p.reference != "" {
		rep.From = "a clone of template " + p.reference
		if schema != "public" {
			// The template's tables are in public; the role's search_path
			// names its own schema.
			if _, err := c.Exec(ctx, "ALTER SCHEMA public RENAME TO "+ident(schema)); err != nil {
				return fmt.Errorf("postgres: moving the template's public schema to %s: %w", schema, err)
			}
		}
	} else {
		rep.From = "a schema-only copy of production's database " + p.prodDB
		pcfg := p.adminCfg.Copy()
		pcfg.Database = p.prodDB
		prod, err := pgx.ConnectConfig(ctx, pcfg)
		if err != nil {
			return fmt.Errorf("postgres: connecting to production's database %s: %w", p.prodDB, err)
		}
		defer p.closeConn(ctx, prod)
		co := CopyOptions{Data: BookkeepingTable}
		if schema != "public" {
			co.Schemas = map[string]string{"public": schema}
		}
		if _, err := CopyDatabase(ctx, prod, c, co); err != nil {
			return fmt.Errorf("postgres: copying production's schema: %w", err)
		}
	}
	return p.adoptObjects(ctx, name, base)
}

// directConn is conn for role in db, at the server itself rather than at
// appHost.
func (p *Provider) directConn(role, db, schema string) database.Conn {
	c := p.conn(role, db, schema)
	u, err := url.Parse(c.Vars["DATABASE_URL"])
	if err == nil {
		u.Host = net.JoinHostPort(p.adminCfg.Host, strconv.Itoa(int(p.adminCfg.Port)))
		c.Vars["DATABASE_URL"] = u.String()
	}
	c.Name = db
	return c
}

// prepareStatements gives the rehearsal database pg_stat_statements when
// the server preloads it, and reports whether it did.
func (p *Provider) prepareStatements(ctx context.Context, c *pgx.Conn) bool {
	if p.noStatements {
		return false
	}
	var libs string
	if err := c.QueryRow(ctx, "SELECT current_setting('shared_preload_libraries')").Scan(&libs); err != nil {
		return false
	}
	found := false
	for l := range strings.SplitSeq(libs, ",") {
		found = found || strings.Trim(strings.TrimSpace(l), `"`) == "pg_stat_statements"
	}
	if !found {
		return false
	}
	// In a schema of previewd's own: public may have been renamed, and
	// the app's schemas stay as they were.
	if _, err := c.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS previewd_rehearsal; CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA previewd_rehearsal"); err != nil {
		p.log.Info("pg_stat_statements is preloaded but cannot be created in the rehearsal database; sampling only", "err", err)
		return false
	}
	if _, err := c.Exec(ctx, "SELECT previewd_rehearsal.pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)"); err != nil {
		p.log.Info("resetting pg_stat_statements failed; sampling only", "err", err)
		return false
	}
	return true
}

// awaitSessionsEnd waits, for at most 3s, until role has no session left
// in c's database.
func (p *Provider) awaitSessionsEnd(ctx context.Context, c *pgx.Conn, role string) {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1", role).Scan(&n); err != nil || n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// relation is one table as the catalog saw it.
type relation struct {
	oid      uint32
	name     string // as the report says it
	filenode uint32
	rows     int64
	touched  int64 // rows inserted, updated and deleted (statistics)
	cols     map[int16]column
}

type column struct {
	name    string
	typ     string
	notNull bool
}

// snapshot reads every user table of c's database with its columns and
// statistics. Names in schema (the environment's own) are unqualified.
func snapshot(ctx context.Context, c *pgx.Conn, schema string) (map[uint32]*relation, error) {
	rows, err := c.Query(ctx, `
SELECT c.oid, n.nspname, c.relname, c.relfilenode, c.reltuples::bigint,
       COALESCE(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.relkind IN ('r', 'p', 'm')
   AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')`)
	if err != nil {
		return nil, err
	}
	rels := map[uint32]*relation{}
	var unknown []uint32
	for rows.Next() {
		var r relation
		var nsp, rel string
		if err := rows.Scan(&r.oid, &nsp, &rel, &r.filenode, &r.rows, &r.touched); err != nil {
			rows.Close()
			return nil, err
		}
		r.name = rel
		if nsp != schema {
			r.name = nsp + "." + rel
		}
		r.cols = map[int16]column{}
		rels[r.oid] = &r
		if r.rows < 0 {
			unknown = append(unknown, r.oid)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, oid := range unknown {
		// Never analyzed: count.
		var table string
		if err := c.QueryRow(ctx, "SELECT $1::oid::regclass::text", oid).Scan(&table); err != nil {
			return nil, err
		}
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			return nil, err
		}
		rels[oid].rows = n
	}
	crows, err := c.Query(ctx, `
SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
  FROM pg_attribute a WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped`, keys(rels))
	if err != nil {
		return nil, err
	}
	for crows.Next() {
		var oid uint32
		var num int16
		var col column
		if err := crows.Scan(&oid, &num, &col.name, &col.typ, &col.notNull); err != nil {
			crows.Close()
			return nil, err
		}
		rels[oid].cols[num] = col
	}
	return rels, crows.Err()
}

func keys(m map[uint32]*relation) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// stmtKey is one execution of a statement as sampled.
type stmtKey struct {
	pid   int32
	start time.Time
}

// lockSeen is the strongest lock seen held on one table.
type lockSeen struct {
	mode        string
	first, last time.Time
}

// samples is what the sampler saw.
type samples struct {
	mu     sync.Mutex
	tables map[uint32]*lockSeen
	stmts  map[stmtKey]*env.RehearsalStatement
	// waited is the last lock a statement was seen waiting for.
	waited string
	// errs counts the samples that failed (the report says so).
	errs int
}

const sqlSample = `
SELECT a.pid, COALESCE(a.query, ''), COALESCE(a.query_start, now()), COALESCE(a.state, ''), now(),
       COALESCE(l.relation, 0), COALESCE(l.mode, ''), COALESCE(l.granted, true),
       COALESCE(l.relation::regclass::text, ''),
       COALESCE((SELECT string_agg(b.pid || ' (' || COALESCE(b.state, '') || ': ' || left(COALESCE(b.query, ''), 80) || ')', ', ')
                   FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(a.pid))), '')
  FROM pg_stat_activity a
  LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'relation'
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
 WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.usename = $1`

// run samples until ctx ends.
func (s *samples) run(ctx context.Context, c *pgx.Conn, role string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.sample(ctx, c, role)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *samples) sample(ctx context.Context, c *pgx.Conn, role string) {
	rows, err := c.Query(ctx, sqlSample, role)
	if err != nil {
		if ctx.Err() == nil { // the end of sampling is no failure
			s.errs++
		}
		return
	}
	defer rows.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for rows.Next() {
		var pid int32
		var query, state, relName, blockers, mode string
		var start, now time.Time
		var rel uint32
		var granted bool
		if err := rows.Scan(&pid, &query, &start, &state, &now, &rel, &mode, &granted, &relName, &blockers); err != nil {
			if ctx.Err() == nil {
				s.errs++
			}
			return
		}
		if state == "active" && query != "" {
			k := stmtKey{pid, start}
			st := s.stmts[k]
			if st == nil {
				st = &env.RehearsalStatement{Query: oneLine(query), Rows: -1}
				st.Lock, st.Table = InferLock(query)
				s.stmts[k] = st
			}
			st.Seconds = max(st.Seconds, now.Sub(start).Seconds())
		}
		if rel == 0 || mode == "" {
			continue
		}
		if !granted {
			w := fmt.Sprintf("%s on `%s`", env.LockName(mode), strings.NewReplacer("`", "'", "\n", " ").Replace(relName))
			// A later sample of the same wait that saw no holder (it
			// was going) does not forget the one an earlier sample saw.
			if blockers != "" {
				s.waited = w + ", held by " + blockers
			} else if !strings.HasPrefix(s.waited, w+", held by ") {
				s.waited = w
			}
			continue
		}
		ls := s.tables[rel]
		switch {
		case ls == nil:
			s.tables[rel] = &lockSeen{mode: mode, first: now, last: now}
		case env.LockRank(mode) > env.LockRank(ls.mode):
			*ls = lockSeen{mode: mode, first: now, last: now}
		case mode == ls.mode:
			ls.last = now
		}
	}
}

// readStatements returns the statements role ran in c's database, from
// pg_stat_statements, slowest first.
func readStatements(ctx context.Context, c *pgx.Conn, role string) ([]env.RehearsalStatement, error) {
	rows, err := c.Query(ctx, `
SELECT query, calls, total_exec_time / 1000, rows FROM previewd_rehearsal.pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND userid = (SELECT oid FROM pg_roles WHERE rolname = $1)
 ORDER BY total_exec_time DESC`, role)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (env.RehearsalStatement, error) {
		var st env.RehearsalStatement
		var calls int64
		err := r.Scan(&st.Query, &calls, &st.Seconds, &st.Rows)
		st.Lock, st.Table = InferLock(st.Query)
		st.Query = oneLine(st.Query)
		if calls > 1 {
			st.Query = fmt.Sprintf("%s (×%d)", st.Query, calls)
		}
		return st, err
	})
}

// oneLine squeezes a statement's white space and cuts it at 200 bytes.
func oneLine(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 200 {
		q = q[:197] + "..."
	}
	return q
}
