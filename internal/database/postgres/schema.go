package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ensureSchema makes the role and schema in one transaction, serialized
// per name by an advisory lock, so it is all or nothing and concurrent
// Ensures of one key wait for each other.
func (p *Provider) ensureSchema(ctx context.Context, key, name string) error {
	return p.ensureSchemaMarked(ctx, key, name, "")
}

// ensureSchemaMarked is ensureSchema with marker m on the role and schema
// ("" for the provider's own, see marker).
func (p *Provider) ensureSchemaMarked(ctx context.Context, key, name, m string) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer p.rollback(ctx, tx)
	if err := lockName(ctx, tx, name); err != nil {
		return fmt.Errorf("postgres: locking %s: %w", name, err)
	}
	s, err := inspect(ctx, tx, name)
	if err != nil {
		return fmt.Errorf("postgres: inspecting %s: %w", name, err)
	}
	if s.schemaExists && !p.ours(key, s.schemaComment) {
		return fmt.Errorf("postgres: schema %q %w (comment %q)", name, ErrForeign, s.schemaComment)
	}
	if s.schemaExists && takenBy(key, s.schemaOwner) {
		// Its owner may have written the marker: a role with CREATE on
		// the database (AllowCreateSchema without its trigger) could make
		// another environment's schema, mark it, and leave objects in it.
		return fmt.Errorf("postgres: schema %q %w: it is owned by %q, another environment's role", name, ErrForeign, s.schemaOwner)
	}
	if m == "" {
		// One marker for both: the CLI's if either was.
		m = p.marker(key, s.roleComment)
		if s.schemaExists {
			m = p.marker(key, s.schemaComment)
			if p.cliOwned(key, s.roleComment) {
				m = p.marker(key, s.roleComment)
			}
		}
	}
	sql, args, err := p.roleSQL(key, name, s, m)
	if err != nil {
		return err
	}
	r := ident(name)
	var b strings.Builder
	b.WriteString(sql)
	if !s.schemaExists {
		fmt.Fprintf(&b, "CREATE SCHEMA %s AUTHORIZATION %s;\n", r, r)
	} else if s.schemaOwner != name {
		fmt.Fprintf(&b, "ALTER SCHEMA %s OWNER TO %s;\n", r, r)
	}
	// The schema carries the role's marker ($2).
	fmt.Fprintf(&b, "COMMENT ON SCHEMA %s IS $2;\n", r)
	fmt.Fprintf(&b, "ALTER ROLE %s SET search_path TO %s;\n", r, r)
	if p.allowCreate {
		// The trigger first, in this transaction: no grant is committed
		// without it.
		if err := p.ensureConfined(ctx, tx); err != nil {
			return err
		}
	}
	var privs []string
	if !s.connectGrant {
		privs = append(privs, "CONNECT")
	}
	if p.allowCreate && !s.createGrant {
		privs = append(privs, "CREATE")
	}
	if len(privs) > 0 {
		b.WriteString(sqlGlobalLock)
		fmt.Fprintf(&b, "GRANT %s ON DATABASE %s TO %s;\n", strings.Join(privs, ", "), ident(p.adminDB), r)
	}
	if !p.allowCreate && s.createGrant {
		// AllowCreateSchema was turned off.
		if len(privs) == 0 {
			b.WriteString(sqlGlobalLock)
		}
		fmt.Fprintf(&b, "REVOKE CREATE ON DATABASE %s FROM %s;\n", ident(p.adminDB), r)
	}
	if _, err := tx.Exec(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("postgres: creating role and schema %s: %w", name, err)
	}
	if err := checkNoCreateElsewhere(ctx, tx, name, name); err != nil {
		return err
	}
	if err := p.runHook(ctx, "schema-tx", name); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: creating role and schema %s: %w", name, err)
	}
	return nil
}

// takenBy reports whether owner, the owner of key's schema, is the role of
// another environment (not key's own role or auxiliary role).
func takenBy(key, owner string) bool {
	k, _, ok := ownerKey(owner)
	return ok && k != key
}

// checkNoCreateElsewhere fails (and so rolls back) if role may create
// objects in any schema but own, e.g. in public on a server older than
// PostgreSQL 15 or where someone granted CREATE on public to PUBLIC.
func checkNoCreateElsewhere(ctx context.Context, tx pgx.Tx, role, own string) error {
	var others []string
	err := tx.QueryRow(ctx, `SELECT COALESCE(array_agg(nspname ORDER BY nspname), '{}') FROM pg_namespace
		WHERE nspname <> $2 AND has_schema_privilege($1, oid, 'CREATE')`, role, own).Scan(&others)
	if err != nil {
		return fmt.Errorf("postgres: checking %s's privileges: %w", role, err)
	}
	if len(others) > 0 {
		return fmt.Errorf("postgres: role %s could create objects in schema(s) %s, so environments would not be isolated; "+
			"revoke CREATE from PUBLIC there (PostgreSQL 15's default for public: REVOKE CREATE ON SCHEMA public FROM PUBLIC)",
			role, strings.Join(others, ", "))
	}
	return nil
}

// dropRoleAndSchema drops the schema and/or the role in one transaction on
// the admin database.
func (p *Provider) dropRoleAndSchema(ctx context.Context, key, name string, role, schema bool) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer p.rollback(ctx, tx)
	if err := lockName(ctx, tx, name); err != nil {
		return fmt.Errorf("postgres: locking %s: %w", name, err)
	}
	s, err := inspect(ctx, tx, name)
	if err != nil {
		return fmt.Errorf("postgres: inspecting %s: %w", name, err)
	}
	// What `previewd db create` made is the CLI's until `previewd db
	// drop`: serve leaves it, and it leaves serve's inventory.
	if role && s.roleExists && p.cliOwned(key, s.roleComment) {
		p.log.Info("leaving what previewd db create made", "role", name)
		role = false
	}
	if schema && s.schemaExists && p.cliOwned(key, s.schemaComment) {
		p.log.Info("leaving what previewd db create made", "schema", name)
		schema = false
	}
	r := ident(name)
	var b strings.Builder
	args := []any{pgx.QueryExecModeSimpleProtocol}
	if role && s.roleExists {
		if !p.ours(key, s.roleComment) {
			return fmt.Errorf("postgres: not dropping role %q: it %w (comment %q)", name, ErrForeign, s.roleComment)
		}
		// Sessions of the role (the app, PgBouncer's server connections)
		// would hold locks that DROP SCHEMA waits for.
		b.WriteString("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid();\n")
		args = append(args, name)
	}
	if schema && s.schemaExists {
		if !p.ours(key, s.schemaComment) {
			return fmt.Errorf("postgres: not dropping schema %q: it %w (comment %q)", name, ErrForeign, s.schemaComment)
		}
		fmt.Fprintf(&b, "DROP SCHEMA IF EXISTS %s CASCADE;\n", r)
	}
	var made []string // schemas the role owns besides its own
	if role && s.roleExists {
		err := tx.QueryRow(ctx, `SELECT COALESCE(array_agg(nspname::text ORDER BY nspname), '{}') FROM pg_namespace
			WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = $1) AND nspname <> $1`, name).Scan(&made)
		if err != nil {
			return fmt.Errorf("postgres: listing %s's schemas: %w", name, err)
		}
		// DROP OWNED drops them (every object the role owns in this
		// database, found as pg_namespace.nspowner is), and also revokes
		// the role's CONNECT and CREATE on this database, which rewrites
		// its pg_database row.
		b.WriteString(sqlGlobalLock)
		fmt.Fprintf(&b, "DROP OWNED BY %s CASCADE;\n", r)
		fmt.Fprintf(&b, "DROP ROLE IF EXISTS %s;\n", r)
	}
	if b.Len() == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("postgres: dropping %s: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: dropping %s: %w", name, err)
	}
	p.log.Info("dropped", "name", name, "role", role, "schema", schema, "owned", made)
	return nil
}

// dropSchemaIn drops a schema that lives in another database than the
// admin one (the admin URL changed since it was made).
func (p *Provider) dropSchemaIn(ctx context.Context, db, key, name string) error {
	if err := p.checkOwned(name); err != nil {
		return err
	}
	cfg := p.adminCfg.Copy()
	cfg.Database = db
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" { // the database is gone
			return nil
		}
		return fmt.Errorf("postgres: connecting to %s to drop schema %s: %w", db, name, err)
	}
	defer p.closeConn(ctx, conn)
	var comment *string
	err = conn.QueryRow(ctx, "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1", name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("postgres: dropping schema %s in %s: %w", name, db, err)
	}
	if comment == nil || !p.ours(key, *comment) {
		return fmt.Errorf("postgres: not dropping schema %q in %s: it %w", name, db, ErrForeign)
	}
	if p.cliOwned(key, *comment) {
		p.log.Info("leaving what previewd db create made", "schema", name, "database", db)
		return nil
	}
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+ident(name)+" CASCADE"); err != nil {
		return fmt.Errorf("postgres: dropping schema %s in %s: %w", name, db, err)
	}
	return nil
}
