package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// withSessionLock runs fn on one admin connection holding name's advisory
// lock. CREATE and DROP DATABASE cannot run in a transaction, so database
// mode cannot use a transaction-scoped lock.
func (p *Provider) withSessionLock(ctx context.Context, name string, fn func(*pgxpool.Conn) error) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", int32(lockClass), lockID(name)); err != nil {
		// The server may yet grant the lock: the session must not go
		// back to the pool.
		p.closeConn(ctx, conn.Conn())
		return fmt.Errorf("postgres: locking %s: %w", name, err)
	}
	defer func() {
		uctx, cancel := cleanupContext(ctx)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1, $2)", int32(lockClass), lockID(name)); err != nil {
			// Closing the session is what releases the lock then.
			p.log.Warn("unlock failed; closing the session", "name", name, "err", err)
			p.closeConn(ctx, conn.Conn())
		}
	}()
	return fn(conn)
}

// ensureDatabase makes the role (in one transaction), then the database
// (CREATE DATABASE cannot be in a transaction), takes ownership of the
// template's objects, revokes PUBLIC's access and finally marks the
// database. A crash at any point leaves a state the next Ensure finishes
// and Drop or Collect removes: the role is marked as it is created, and an
// unmarked database owned by its marked role is known to be previewd's.
func (p *Provider) ensureDatabase(ctx context.Context, key, name string) error {
	return p.withSessionLock(ctx, name, func(conn *pgxpool.Conn) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		defer p.rollback(ctx, tx)
		s, err := inspect(ctx, tx, name)
		if err != nil {
			return fmt.Errorf("postgres: inspecting %s: %w", name, err)
		}
		sql, args, err := p.roleSQL(key, name, s, p.marker(key, s.roleComment))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("postgres: creating role %s: %w", name, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("postgres: creating role %s: %w", name, err)
		}
		if err := p.runHook(ctx, "role", name); err != nil {
			return err
		}

		var comment, owner string
		allow := true
		err = conn.QueryRow(ctx, `SELECT COALESCE(shobj_description(oid, 'pg_database'), ''), pg_get_userbyid(datdba), datallowconn
			FROM pg_database WHERE datname = $1`, name).Scan(&comment, &owner, &allow)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if err := p.createDatabase(ctx, conn, name, name); err != nil {
				return err
			}
			owner = name
		case err != nil:
			return fmt.Errorf("postgres: inspecting database %s: %w", name, err)
		case comment != "" && !p.ours(key, comment), comment == "" && owner != name:
			return fmt.Errorf("postgres: database %q %w (owner %q, comment %q)", name, ErrForeign, owner, comment)
		}
		if !allow {
			// A Reset that crashed while swapping databases (see
			// resetDatabase) left it refusing connections.
			if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident(name)+" WITH ALLOW_CONNECTIONS true"); err != nil {
				return fmt.Errorf("postgres: allowing connections to %s again: %w", name, err)
			}
		}
		m := p.marker(key, comment)
		if comment == m && owner == name {
			return nil
		}
		if err := p.runHook(ctx, "database", name); err != nil {
			return err
		}
		return p.finishDatabase(ctx, conn, name, name, s.adminSuper, m)
	})
}

// finishDatabase gives role the objects of db (cloned from the template),
// then, in one transaction, db itself, revokes PUBLIC's access to it and
// marks it with m.
func (p *Provider) finishDatabase(ctx context.Context, conn *pgxpool.Conn, db, role string, adminSuper bool, m string) error {
	if err := checkLiteral(m); err != nil {
		return err
	}
	if !adminSuper {
		// A non-superuser admin acts on public (owned by
		// pg_database_owner) through its membership in the role, which
		// only passes pg_database_owner's rights on while the role
		// inherits. Ensure sets NOINHERIT again whatever happens here.
		if _, err := conn.Exec(ctx, "ALTER ROLE "+ident(role)+" INHERIT"); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	err := p.adoptObjects(ctx, db, role)
	if !adminSuper {
		rctx, cancel := cleanupContext(ctx)
		_, nerr := conn.Exec(rctx, "ALTER ROLE "+ident(role)+" NOINHERIT")
		cancel()
		if nerr != nil {
			err = errors.Join(err, fmt.Errorf("postgres: setting %s NOINHERIT again: %w", role, nerr))
		}
	}
	if err != nil {
		return err
	}
	d := ident(db)
	_, err = conn.Exec(ctx, "BEGIN;\n"+
		"ALTER DATABASE "+d+" OWNER TO "+ident(role)+";\n"+
		"REVOKE ALL ON DATABASE "+d+" FROM PUBLIC;\n"+
		"COMMENT ON DATABASE "+d+" IS $1;\n"+
		"COMMIT;", pgx.QueryExecModeSimpleProtocol, m)
	if err != nil {
		rctx, cancel := cleanupContext(ctx)
		if _, rerr := conn.Exec(rctx, "ROLLBACK"); rerr != nil {
			// A session in an unknown transaction state must not go
			// back to the pool.
			p.closeConn(ctx, conn.Conn())
		}
		cancel()
		return fmt.Errorf("postgres: finishing database %s: %w", db, err)
	}
	return nil
}

// createDatabase runs CREATE DATABASE, retrying with backoff while the
// template is in use (SQLSTATE 55006), for at most the template wait.
func (p *Provider) createDatabase(ctx context.Context, conn *pgxpool.Conn, name, owner string) error {
	return p.createDatabaseFrom(ctx, conn, name, owner, p.template)
}

// createDatabaseFrom is createDatabase from template ("" for an empty
// database).
func (p *Provider) createDatabaseFrom(ctx context.Context, conn *pgxpool.Conn, name, owner, template string) error {
	stmt := "CREATE DATABASE " + ident(name) + " OWNER " + ident(owner)
	if template != "" {
		stmt += " TEMPLATE " + ident(template)
		if major(conn.Conn().PgConn()) >= 15 && p.strategy != "" {
			stmt += " STRATEGY " + p.strategy
		}
	}
	tmpl := template
	if tmpl == "" {
		tmpl = "template1"
	}
	start := time.Now()
	backoff := 20 * time.Millisecond
	var last error
	for {
		// While sessions use the template, CREATE DATABASE would wait
		// (up to 5s, unbounded by our wait) and fail with 55006; look
		// first and try only when it looks free.
		holders, err := templateHolders(ctx, conn, tmpl)
		if err != nil {
			return fmt.Errorf("postgres: checking template %s: %w", tmpl, err)
		}
		if len(holders) == 0 {
			_, err := conn.Exec(ctx, stmt)
			if err == nil || pgCode(err) == "42P04" { // 42P04: made meanwhile
				return nil
			}
			if pgCode(err) != "55006" {
				return fmt.Errorf("postgres: creating database %s: %w", name, err)
			}
			last = err
		}
		waited := time.Since(start)
		if waited >= p.wait || ctx.Err() != nil {
			if len(holders) == 0 {
				hctx, cancel := cleanupContext(ctx)
				var herr error
				if holders, herr = templateHolders(hctx, conn, tmpl); herr != nil {
					p.log.Warn("listing the template's sessions failed", "template", tmpl, "err", herr)
				}
				cancel()
			}
			if last == nil {
				last = &pgconn.PgError{Severity: "ERROR", Code: "55006", Message: fmt.Sprintf("source database %q is being accessed by other users", tmpl)}
			}
			return &TemplateBusyError{Template: tmpl, Holders: holders, Waited: waited, Err: errors.Join(last, ctx.Err())}
		}
		p.log.Info("template busy; retrying", "template", tmpl, "database", name, "sessions", len(holders), "backoff", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(min(backoff, p.wait-waited)):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// Holder is a session that uses a template database.
type Holder struct {
	PID         int32
	User        string
	Application string
	Client      string
	State       string
	Since       time.Time
}

// TemplateBusyError says that the template could not be cloned because
// other sessions used it for as long as Ensure waited, and who they are.
type TemplateBusyError struct {
	Template string
	// Op is what could not be done to the template: "" (cloned) or
	// "renamed" (a refresh's swap).
	Op      string
	Holders []Holder
	Waited  time.Duration
	Err     error
}

func (e *TemplateBusyError) Error() string {
	var b strings.Builder
	op := e.Op
	if op == "" {
		op = "cloned"
	}
	fmt.Fprintf(&b, "postgres: template database %q is being accessed by other sessions, so it cannot be %s (retried for %s)", e.Template, op, e.Waited.Round(time.Millisecond))
	if len(e.Holders) == 0 {
		b.WriteString("; the sessions had ended when they were looked up")
	}
	for i, h := range e.Holders {
		sep := "; held by "
		if i > 0 {
			sep = ", "
		}
		fmt.Fprintf(&b, "%spid %d (user %q, application %q, client %s, %s since %s)", sep, h.PID, h.User, h.Application, h.Client, h.State, h.Since.Format(time.RFC3339))
	}
	b.WriteString("; close them, e.g. with pg_terminate_backend(pid)")
	return b.String()
}

func (e *TemplateBusyError) Unwrap() error { return e.Err }

func templateHolders(ctx context.Context, conn *pgxpool.Conn, template string) ([]Holder, error) {
	rows, err := conn.Query(ctx, `SELECT pid, COALESCE(usename, ''), COALESCE(application_name, ''),
		COALESCE(host(client_addr), 'local'), COALESCE(state, 'unknown'), COALESCE(backend_start, now())
		FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY backend_start, pid`, template)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Holder, error) {
		var h Holder
		err := r.Scan(&h.PID, &h.User, &h.Application, &h.Client, &h.State, &h.Since)
		return h, err
	})
}

// adoptObjects gives role (the environment's) ownership of what database
// name cloned from the template (schemas, including public, tables, views, sequences,
// routines, types), so its migrations can use and alter them. The public
// schema is owned by pg_database_owner, but the role is NOINHERIT and so
// does not get that role's rights from owning the database: it must own
// public itself. Objects that belong to extensions, and sequences owned by
// a table column (they follow their table), are left alone.
func (p *Provider) adoptObjects(ctx context.Context, name, role string) error {
	cfg := p.adminCfg.Copy()
	cfg.Database = name
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: connecting to %s: %w", name, err)
	}
	defer p.closeConn(ctx, conn)
	rows, err := conn.Query(ctx, sqlForeignOwned, role)
	if err != nil {
		return fmt.Errorf("postgres: listing objects of %s: %w", name, err)
	}
	type obj struct{ Kind, Schema, Name, Signature string }
	objs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[obj])
	if err != nil {
		return fmt.Errorf("postgres: listing objects of %s: %w", name, err)
	}
	if len(objs) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	for _, o := range objs {
		target := ident(o.Schema)
		switch {
		case o.Signature != "":
			// regprocedure's output: the server's own quoting of the
			// routine's name and argument types.
			target = o.Signature
		case o.Kind != "SCHEMA":
			target = ident(o.Schema, o.Name)
		}
		fmt.Fprintf(&b, "ALTER %s %s OWNER TO %s;\n", o.Kind, target, ident(role))
	}
	b.WriteString("COMMIT;")
	if _, err := conn.Exec(ctx, b.String()); err != nil {
		return fmt.Errorf("postgres: giving %s its cloned objects: %w", name, err)
	}
	return nil
}

const sqlForeignOwned = `
WITH me AS (SELECT oid FROM pg_roles WHERE rolname = $1),
ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e'),
ns AS (SELECT oid, nspname FROM pg_namespace
       WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema')
SELECT 'SCHEMA', n.nspname, '', '' FROM ns n JOIN pg_namespace x ON x.oid = n.oid
 WHERE x.nspowner <> (SELECT oid FROM me)
   AND NOT EXISTS (SELECT 1 FROM ext WHERE classid = 'pg_namespace'::regclass AND objid = n.oid)
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, n.nspname, c.relname, ''
  FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> (SELECT oid FROM me)
   AND NOT EXISTS (SELECT 1 FROM ext WHERE classid = 'pg_class'::regclass AND objid = c.oid)
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
            AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT CASE f.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
       n.nspname, f.proname, f.oid::regprocedure::text
  FROM pg_proc f JOIN ns n ON n.oid = f.pronamespace
 WHERE f.proowner <> (SELECT oid FROM me)
   AND NOT EXISTS (SELECT 1 FROM ext WHERE classid = 'pg_proc'::regclass AND objid = f.oid)
UNION ALL
SELECT 'TYPE', n.nspname, t.typname, ''
  FROM pg_type t JOIN ns n ON n.oid = t.typnamespace
 WHERE t.typowner <> (SELECT oid FROM me)
   AND (t.typtype IN ('e', 'd', 'r')
        OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = t.typrelid AND r.relkind = 'c')))
   AND NOT EXISTS (SELECT 1 FROM ext WHERE classid = 'pg_type'::regclass AND objid = t.oid)`

// dropDatabase drops an environment's database (WITH (FORCE): its
// sessions are ended), if it exists and is previewd's: marked, or owned by
// its marked role.
func (p *Provider) dropDatabase(ctx context.Context, key, name string) error {
	if err := p.checkOwned(name); err != nil {
		return err
	}
	return p.withSessionLock(ctx, name, func(conn *pgxpool.Conn) error {
		var comment, owner, ownerComment string
		err := conn.QueryRow(ctx, `SELECT COALESCE(shobj_description(d.oid, 'pg_database'), ''), r.rolname,
			COALESCE(shobj_description(r.oid, 'pg_authid'), '')
			FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1`, name).Scan(&comment, &owner, &ownerComment)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("postgres: inspecting database %s: %w", name, err)
		}
		_, base, _ := ownerKey(name)
		if !p.ours(key, comment) && (comment != "" || owner != base || !p.ours(key, ownerComment)) {
			return fmt.Errorf("postgres: not dropping database %q: it %w (owner %q, comment %q)", name, ErrForeign, owner, comment)
		}
		if p.cliOwned(key, comment) || comment == "" && p.cliOwned(key, ownerComment) {
			p.log.Info("leaving what previewd db create made", "database", name)
			return nil
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("postgres: dropping database %s: %w", name, err)
		}
		p.log.Info("dropped", "database", name)
		return nil
	})
}
