package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Options.AllowCreateSchema gives each schema-mode role CREATE on the admin
// database, so an app's own `CREATE SCHEMA IF NOT EXISTS "<its schema>"`
// passes PostgreSQL's privilege check (made before IF NOT EXISTS is looked
// at). CREATE on a database also lets a role create any schema, rename the
// schemas it owns, install trusted extensions and create publications.
// previewd confines that with an event trigger it installs (as a superuser)
// in the admin database before it grants CREATE to any role: on
// ddl_command_end of those commands it refuses, for every role whose name
// has Prefix, a schema whose name is not the role's own, and every
// extension and publication. A schema a role does create is thus its own
// (after it dropped it); the trigger gives it the role's marker, so Ensure
// adopts it again and Drop and Collect remove it.

// confineSchema holds the event trigger's function. previewd makes it,
// owned by the admin role, with no privileges for anyone else.
const confineSchema = "previewd"

// confineFunc and confineTrigger name the function and the event trigger.
const (
	confineFunc    = "confine_preview_roles"
	confineTrigger = "previewd_confine_preview_roles"
)

// confineTags are the commands the trigger looks at: every one that the
// CREATE privilege on a database allows.
var confineTags = []string{"CREATE SCHEMA", "ALTER SCHEMA", "CREATE EXTENSION", "CREATE PUBLICATION"}

// confineBody is the trigger function's body. It runs as the role that ran
// the command (not SECURITY DEFINER): refusing needs no privilege, and the
// comment it puts on a role's own new schema the role may put itself.
var confineBody = `
DECLARE
  c record;
  who name := current_user;
  nsp name;
BEGIN
  IF NOT starts_with(who, '` + Prefix + `') THEN
    RETURN;
  END IF;
  FOR c IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    IF c.object_type = 'schema' THEN
      SELECT n.nspname INTO nsp FROM pg_namespace n WHERE n.oid = c.objid;
      IF nsp IS DISTINCT FROM who THEN
        RAISE EXCEPTION 'previewd: role % may not % %: a preview role may create no schema but its own (%)', who, lower(c.command_tag), c.object_identity, who
          USING ERRCODE = 'insufficient_privilege',
                HINT = 'database.postgres.allowCreateSchema lets a preview''s CREATE SCHEMA IF NOT EXISTS of its own DATABASE_SCHEMA pass; use that schema';
      END IF;
      IF c.command_tag = 'CREATE SCHEMA' THEN
        EXECUTE format('COMMENT ON SCHEMA %I IS %L', nsp,
          (SELECT shobj_description(r.oid, 'pg_authid') FROM pg_roles r WHERE r.rolname = who));
      END IF;
    ELSIF c.object_type IN ('extension', 'publication') THEN
      RAISE EXCEPTION 'previewd: role % may not % %: preview roles create no %s', who, lower(c.command_tag), c.object_identity, c.object_type
        USING ERRCODE = 'insufficient_privilege';
    END IF;
  END LOOP;
END
`

// sqlConfineInstalled reports whether the trigger is installed as
// confineSQL makes it: enabled, on confineTags, calling the function with
// confineBody, the function and its schema owned by a superuser or by
// previewd's own role (nobody else may replace or drop them).
const sqlConfineInstalled = `SELECT EXISTS (
  SELECT 1 FROM pg_event_trigger e
  JOIN pg_proc f ON f.oid = e.evtfoid
  JOIN pg_namespace n ON n.oid = f.pronamespace
  WHERE e.evtname = $1 AND e.evtevent = 'ddl_command_end' AND e.evtenabled IN ('O', 'A')
    AND e.evttags = $2::text[] AND n.nspname = $3 AND f.proname = $4 AND f.prosrc = $5
    AND f.proowner IN (SELECT oid FROM pg_roles WHERE rolsuper OR rolname = current_user)
    AND n.nspowner IN (SELECT oid FROM pg_roles WHERE rolsuper OR rolname = current_user))`

// confineSQL returns the statements that (re)install the trigger.
func confineSQL() string {
	s, fn := ident(confineSchema), ident(confineSchema, confineFunc)
	tags := make([]string, len(confineTags))
	for i, t := range confineTags {
		tags[i] = "'" + t + "'"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s AUTHORIZATION CURRENT_USER;\n", s)
	fmt.Fprintf(&b, "REVOKE ALL ON SCHEMA %s FROM PUBLIC;\n", s)
	fmt.Fprintf(&b, "COMMENT ON SCHEMA %s IS 'previewd: confines preview roles given CREATE on this database (database.postgres.allowCreateSchema)';\n", s)
	fmt.Fprintf(&b, "CREATE OR REPLACE FUNCTION %s() RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $previewd$%s$previewd$;\n", fn, confineBody)
	fmt.Fprintf(&b, "REVOKE ALL ON FUNCTION %s() FROM PUBLIC;\n", fn)
	fmt.Fprintf(&b, "DROP EVENT TRIGGER IF EXISTS %s;\n", ident(confineTrigger))
	fmt.Fprintf(&b, "CREATE EVENT TRIGGER %s ON ddl_command_end WHEN TAG IN (%s) EXECUTE FUNCTION %s();\n",
		ident(confineTrigger), strings.Join(tags, ", "), fn)
	return b.String()
}

// errConfine is wrapped by ensureConfined's error when previewd may not
// install the trigger.
var errConfine = errors.New("database.postgres.allowCreateSchema needs an adminURL role that may create event triggers (a superuser): " +
	"previewd grants preview roles CREATE on the database only once an event trigger confines it, so that no preview can create another environment's schema; " +
	"connect as a superuser, or turn allowCreateSchema off (apps then must not run CREATE SCHEMA)")

// ensureConfined makes sure, in tx, that the trigger is installed before
// the caller grants CREATE on the database: it looks, and if the trigger is
// missing or not as previewd makes it, installs it under an advisory lock
// (Ensures of several keys may get here at once). Within tx, a grant made
// after it returns nil is never committed without the trigger.
func (p *Provider) ensureConfined(ctx context.Context, tx pgx.Tx) error {
	installed := func() (bool, error) {
		var ok bool
		err := tx.QueryRow(ctx, sqlConfineInstalled, confineTrigger, confineTags, confineSchema, confineFunc, confineBody).Scan(&ok)
		return ok, err
	}
	ok, err := installed()
	if err != nil {
		return fmt.Errorf("postgres: looking for the event trigger %s: %w", confineTrigger, err)
	}
	if ok {
		return nil
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", int32(lockClass), lockID(confineTrigger)); err != nil {
		return fmt.Errorf("postgres: locking %s: %w", confineTrigger, err)
	}
	if ok, err = installed(); err != nil {
		return fmt.Errorf("postgres: looking for the event trigger %s: %w", confineTrigger, err)
	} else if ok {
		return nil
	}
	var owner string
	var super bool
	err = tx.QueryRow(ctx, `SELECT pg_get_userbyid(n.nspowner), r.rolsuper OR r.rolname = current_user
		FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $1`, confineSchema).Scan(&owner, &super)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("postgres: looking for schema %s: %w", confineSchema, err)
	case !super:
		return fmt.Errorf("postgres: schema %q exists and is owned by %q, who could replace the function of previewd's event trigger; "+
			"drop or rename it, or turn database.postgres.allowCreateSchema off", confineSchema, owner)
	}
	if _, err := tx.Exec(ctx, confineSQL()); err != nil {
		if pgCode(err) == "42501" {
			return fmt.Errorf("postgres: %w (%w)", errConfine, err)
		}
		return fmt.Errorf("postgres: installing the event trigger %s: %w", confineTrigger, err)
	}
	p.log.Info("installed the event trigger that confines preview roles' CREATE SCHEMA", "trigger", confineTrigger, "database", p.adminDB)
	return nil
}
