package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

var _ database.Resetter = (*Provider)(nil)

// swapWait bounds how long a database-mode Reset keeps ending sessions of
// the two databases it renames before it gives up and leaves the current
// one serving.
const swapWait = 10 * time.Second

// ResetItems implements database.Resetter: in schema mode the role and
// schema Name(key)$next and the schema Name(key)$old, in database mode the
// databases Name(key)$next and Name(key)$old. Nothing for production.
func (p *Provider) ResetItems(t database.Target) []env.Item {
	if isProduction(t) {
		return nil
	}
	next, old, err := p.resetNames(t.Key)
	if err != nil {
		return nil
	}
	if p.isolation == IsolationDatabase {
		return []env.Item{{Kind: env.ItemDatabase, Name: next}, {Kind: env.ItemDatabase, Name: old}}
	}
	data, _ := json.Marshal(itemData{Database: p.adminDB})
	return []env.Item{
		{Kind: env.ItemRole, Name: next},
		{Kind: env.ItemSchema, Name: next, Data: data},
		{Kind: env.ItemSchema, Name: old, Data: data},
	}
}

func (p *Provider) resetNames(key string) (next, old string, err error) {
	if next, err = AuxName(key, AuxNext); err != nil {
		return "", "", err
	}
	if old, err = AuxName(key, AuxOld); err != nil {
		return "", "", err
	}
	if err := errors.Join(p.checkOwned(next), p.checkOwned(old)); err != nil {
		return "", "", err
	}
	return next, old, nil
}

// Reset implements database.Resetter. It first makes sure the environment
// exists (Ensure) and removes what a crashed Reset left.
//
// Schema mode: the fresh schema Name(key)$next is owned by a role of the
// same name (LOGIN, NOINHERIT, its password derived like every role's,
// search_path its schema), so prepare's migrate creates its tables there
// unqualified, and cannot touch the current schema. The swap is one
// transaction: the current schema becomes $old, $next becomes the
// environment's, the temporary role's objects go to the environment's
// role, and the temporary role is dropped. The environment's role finds
// its schema by name (ALTER ROLE … SET search_path), so the app's sessions,
// pooled or not, see the fresh schema from the next statement on: no
// query fails and no restart is needed. A statement that runs during the
// swap finishes on the old tables. $old is then dropped in a transaction
// of its own, after statements still using it end.
//
// Database mode: the fresh database Name(key)$next is cloned from the
// template (or empty), owned by the environment's role, and prepare
// connects to it as that role. The swap cannot be one statement:
// PostgreSQL renames only a database nobody is connected to. In one
// transaction Reset ends the sessions of the current database and of
// $next, renames the current one to $old and $next to the environment's
// name (see swapDatabase), and then drops $old. The
// app's connections are cut once (SQLSTATE 57P01, or PgBouncer's 08P01
// "server conn crashed?"): its pool reconnects to the fresh database with
// the same URL. An app that does not reconnect must be restarted.
func (p *Provider) Reset(ctx context.Context, t database.Target, prepare func(ctx context.Context, next database.Conn) error) (database.Conn, error) {
	if isProduction(t) {
		return database.Conn{}, fmt.Errorf("postgres: refusing to reset production: %w", database.ErrProduction)
	}
	name, err := p.previewName(t.Key)
	if err != nil {
		return database.Conn{}, err
	}
	next, old, err := p.resetNames(t.Key)
	if err != nil {
		return database.Conn{}, err
	}
	cur, err := p.Ensure(ctx, t)
	if err != nil {
		return database.Conn{}, err
	}
	// What a crashed Reset left.
	var left bool
	err = p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ANY($1))
		OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ANY($1))
		OR EXISTS (SELECT 1 FROM pg_database WHERE datname = ANY($1))`, []string{next, old}).Scan(&left)
	if err != nil {
		return database.Conn{}, fmt.Errorf("postgres: looking for what an earlier reset left: %w", err)
	}
	if left {
		if err := p.Drop(ctx, p.ResetItems(t)); err != nil {
			return database.Conn{}, fmt.Errorf("postgres: removing what an earlier reset left: %w", err)
		}
	}
	if p.isolation == IsolationDatabase {
		err = p.resetDatabase(ctx, t.Key, name, next, old, prepare)
	} else {
		err = p.resetSchema(ctx, t.Key, name, next, old, prepare)
	}
	if err != nil {
		return database.Conn{}, err
	}
	return cur, nil
}

// dropNext drops the fresh objects after a failed prepare or swap, even
// when ctx has ended.
func (p *Provider) dropNext(ctx context.Context, t database.Target, cause error) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := p.Drop(dctx, p.ResetItems(t)); err != nil {
		return errors.Join(cause, fmt.Errorf("postgres: dropping the fresh database: %w", err))
	}
	return cause
}

func (p *Provider) resetSchema(ctx context.Context, key, name, next, old string, prepare func(context.Context, database.Conn) error) error {
	t := database.Target{Key: key}
	if err := p.ensureSchemaMarked(ctx, key, next, p.marker(key, "")); err != nil {
		return p.dropNext(ctx, t, err)
	}
	if err := p.runHook(ctx, "reset-next", next); err != nil {
		return err
	}
	if err := prepare(ctx, p.conn(next, p.adminDB, next)); err != nil {
		return p.dropNext(ctx, t, fmt.Errorf("postgres: preparing the fresh schema %s: %w", next, err))
	}
	if err := p.runHook(ctx, "reset-swap", next); err != nil {
		return err
	}
	if err := p.swapSchema(ctx, key, name, next, old); err != nil {
		return p.dropNext(ctx, t, err)
	}
	if err := p.runHook(ctx, "reset-swapped", old); err != nil {
		return err
	}
	if err := p.dropRoleAndSchema(ctx, key, old, false, true); err != nil {
		return fmt.Errorf("postgres: dropping the previous schema: %w", err)
	}
	return nil
}

// swapSchema puts the schema next in name's place in one transaction.
func (p *Provider) swapSchema(ctx context.Context, key, name, next, old string) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer p.rollback(ctx, tx)
	for _, n := range []string{name, next} {
		if err := lockName(ctx, tx, n); err != nil {
			return fmt.Errorf("postgres: locking %s: %w", n, err)
		}
	}
	cs, err := inspect(ctx, tx, name)
	if err != nil {
		return fmt.Errorf("postgres: inspecting %s: %w", name, err)
	}
	ns, err := inspect(ctx, tx, next)
	if err != nil {
		return fmt.Errorf("postgres: inspecting %s: %w", next, err)
	}
	switch {
	case !cs.schemaExists || !cs.roleExists:
		return fmt.Errorf("postgres: schema or role %s vanished during the reset", name)
	case !ns.schemaExists || !ns.roleExists:
		return fmt.Errorf("postgres: schema or role %s vanished during the reset", next)
	case !p.ours(key, cs.schemaComment):
		return fmt.Errorf("postgres: schema %q %w (comment %q)", name, ErrForeign, cs.schemaComment)
	case !p.ours(key, ns.schemaComment) || !p.ours(key, ns.roleComment):
		return fmt.Errorf("postgres: schema or role %q %w", next, ErrForeign)
	}
	// The fresh schema keeps the current one's marker (the CLI's stays
	// the CLI's).
	// The previous one gets this provider's, so it drops it.
	m, mOld := cs.schemaComment, p.marker(key, "")
	if err := errors.Join(checkLiteral(m), checkLiteral(mOld)); err != nil {
		return err
	}
	c, n, o := ident(name), ident(next), ident(old)
	var b strings.Builder
	fmt.Fprintf(&b, "ALTER SCHEMA %s RENAME TO %s;\n", c, o)
	fmt.Fprintf(&b, "ALTER SCHEMA %s RENAME TO %s;\n", n, c)
	fmt.Fprintf(&b, "REASSIGN OWNED BY %s TO %s;\n", n, c)
	fmt.Fprintf(&b, "COMMENT ON SCHEMA %s IS $2;\n", c)
	fmt.Fprintf(&b, "COMMENT ON SCHEMA %s IS $3;\n", o)
	// Until it is dropped, the environment's role must not be able to
	// create objects in it (Ensure's isolation check refuses that).
	fmt.Fprintf(&b, "ALTER SCHEMA %s OWNER TO CURRENT_USER;\n", o)
	// prepare's sessions (PgBouncer's server connections of the role).
	b.WriteString("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid();\n")
	b.WriteString(sqlGlobalLock) // DROP OWNED revokes its CONNECT
	fmt.Fprintf(&b, "DROP OWNED BY %s CASCADE;\n", n)
	fmt.Fprintf(&b, "DROP ROLE %s;\n", n)
	if _, err := tx.Exec(ctx, b.String(), pgx.QueryExecModeSimpleProtocol, next, m, mOld); err != nil {
		return fmt.Errorf("postgres: swapping in schema %s: %w", next, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: swapping in schema %s: %w", next, err)
	}
	return nil
}

func (p *Provider) resetDatabase(ctx context.Context, key, name, next, old string, prepare func(context.Context, database.Conn) error) error {
	t := database.Target{Key: key}
	var super bool
	err := p.withSessionLock(ctx, name, func(conn *pgxpool.Conn) error {
		if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if err := p.createDatabase(ctx, conn, next, name); err != nil {
			return err
		}
		return p.finishDatabase(ctx, conn, next, name, super, p.marker(key, ""))
	})
	if err != nil {
		return p.dropNext(ctx, t, err)
	}
	if err := p.runHook(ctx, "reset-next", next); err != nil {
		return err
	}
	if err := prepare(ctx, p.conn(name, next, "public")); err != nil {
		return p.dropNext(ctx, t, fmt.Errorf("postgres: preparing the fresh database %s: %w", next, err))
	}
	if err := p.runHook(ctx, "reset-swap", next); err != nil {
		return err
	}
	if err := p.withSessionLock(ctx, name, func(conn *pgxpool.Conn) error {
		return p.swapDatabase(ctx, conn, key, name, next, old, super)
	}); err != nil {
		return p.dropNext(ctx, t, err)
	}
	if err := p.runHook(ctx, "reset-swapped", old); err != nil {
		return err
	}
	if err := p.dropDatabase(ctx, key, old); err != nil {
		return fmt.Errorf("postgres: dropping the previous database: %w", err)
	}
	return nil
}

// swapDatabase puts the database next in name's place. In one
// transaction it ends the sessions of both (waiting for them to exit) and
// renames name to old and next to name. A superuser admin first locks
// pg_database, which logins read before they join a database: they wait
// (for the few milliseconds the transaction takes, on the whole server)
// and then find the fresh database under the name. Without that lock, a
// session a pooler opens in between makes the rename fail (55006, after
// PostgreSQL waited 5 s for it). After closeAfter such failures it stops
// new connections to name (ALLOW_CONNECTIONS false) and tries again, which
// wins but costs more: a pooler whose login is refused fails its clients
// for a while (PgBouncer's server_login_retry, 15 s by default; set it to
// 1 s). It gives up after swapWait; name then serves as before, accepting
// connections again.
func (p *Provider) swapDatabase(ctx context.Context, conn *pgxpool.Conn, key, name, next, old string, super bool) (err error) {
	var comment string
	err = conn.QueryRow(ctx, "SELECT COALESCE(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1", name).Scan(&comment)
	if err != nil {
		return fmt.Errorf("postgres: inspecting database %s: %w", name, err)
	}
	if !p.ours(key, comment) {
		return fmt.Errorf("postgres: database %q %w (comment %q)", name, ErrForeign, comment)
	}
	// The previous one gets this provider's marker, so it drops it.
	mOld := p.marker(key, "")
	if err := errors.Join(checkLiteral(comment), checkLiteral(mOld)); err != nil {
		return err
	}
	c, n, o := ident(name), ident(next), ident(old)
	// Ends the sessions of both and waits, in steps of a millisecond, until
	// they are gone (pg_terminate_backend's own wait has steps of 100 ms
	// per session). The names are checked preview names ([a-z0-9_$], no
	// "$$"), so they can be literals in the block.
	if err := errors.Join(checkLiteral(name), checkLiteral(next)); err != nil {
		return err
	}
	endSessions := fmt.Sprintf(`DO $swap$ BEGIN
  PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN ('%[1]s', '%[2]s') AND pid <> pg_backend_pid();
  FOR i IN 1..2000 LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname IN ('%[1]s', '%[2]s') AND pid <> pg_backend_pid());
    PERFORM pg_sleep(0.001);
  END LOOP;
END $swap$;
`, name, next)
	closed := false
	defer func() {
		if !closed || err == nil {
			return
		}
		rctx, cancel := cleanupContext(ctx)
		defer cancel()
		if _, rerr := conn.Exec(rctx, "ALTER DATABASE "+c+" WITH ALLOW_CONNECTIONS true"); rerr != nil {
			// Ensure allows them again.
			err = errors.Join(err, fmt.Errorf("postgres: opening database %s again: %w", name, rerr))
		}
	}()
	start := time.Now()
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		if attempt > p.closeAfter && !closed {
			if _, err := conn.Exec(ctx, "ALTER DATABASE "+c+" WITH ALLOW_CONNECTIONS false"); err != nil {
				return fmt.Errorf("postgres: closing database %s: %w", name, err)
			}
			closed = true
			p.log.Warn("sessions kept coming back; refusing new connections to swap the database", "database", name, "attempts", attempt-1)
			if err := p.runHook(ctx, "reset-closed", name); err != nil {
				return err
			}
		}
		lock := ""
		if super {
			// Logins read pg_database before they join a database: they
			// wait for this lock (a few milliseconds, on the whole
			// server), and then find the fresh database under the name.
			// While it waits for the lock (CREATE and DROP DATABASE hold
			// pg_database for as long as they copy or remove files),
			// logins queue behind it: it waits at most 50 ms, then tries
			// again.
			lock = "SET LOCAL lock_timeout = '50ms';\n" +
				"LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE;\n" +
				"SET LOCAL lock_timeout = 0;\n"
		}
		_, err := conn.Exec(ctx, "BEGIN;\n"+lock+
			endSessions+
			"ALTER DATABASE "+c+" RENAME TO "+o+";\n"+
			"ALTER DATABASE "+n+" RENAME TO "+c+";\n"+
			"COMMENT ON DATABASE "+c+" IS $1;\n"+
			"COMMENT ON DATABASE "+o+" IS $2;\n"+
			"COMMIT;", pgx.QueryExecModeSimpleProtocol, comment, mOld)
		if err == nil {
			if closed {
				// The fresh database was never closed; the old one is
				// dropped next.
				closed = false
			}
			return nil
		}
		rctx, cancel := cleanupContext(ctx)
		if _, rerr := conn.Exec(rctx, "ROLLBACK"); rerr != nil {
			p.closeConn(ctx, conn.Conn())
			cancel()
			return fmt.Errorf("postgres: swapping in database %s: %w", next, errors.Join(err, rerr))
		}
		cancel()
		// 55006: a session is (again) there; 55P03: pg_database is busy.
		if code := pgCode(err); code == "55P03" {
			attempt-- // not a lost race
		} else if code != "55006" {
			return fmt.Errorf("postgres: swapping in database %s: %w", next, err)
		}
		if time.Since(start) > swapWait || ctx.Err() != nil {
			return fmt.Errorf("postgres: swapping in database %s: %w", next, errors.Join(err, ctx.Err()))
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

// closeAfter is how many times swapDatabase tries to rename between
// sessions before it refuses new ones (Provider.closeAfter, which tests
// lower). A try that loses the race costs 5 s (PostgreSQL waits that long
// for the sessions to go before it fails the rename), and without the
// lock of pg_database (an admin that is not a superuser) an app that
// reconnects all the time wins it often, so one try is enough.
const closeAfter = 1
