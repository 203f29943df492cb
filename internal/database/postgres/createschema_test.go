package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/database"
)

// drizzleMigrate runs, on conn, the statements a Drizzle-style migrator sends on
// every run, each on its own (through PgBouncer in transaction mode each
// is its own transaction): CREATE SCHEMA IF NOT EXISTS of its
// DATABASE_SCHEMA, SET search_path at session level, then unqualified DDL
// and queries. tag is written into the rows; it returns the tags SELECT
// read back.
func drizzleMigrate(ctx context.Context, conn *pgx.Conn, schema, tag string, first bool) ([]string, error) {
	create := "CREATE TABLE"
	if !first {
		create = "CREATE TABLE IF NOT EXISTS"
	}
	for _, sql := range []string{
		`CREATE SCHEMA IF NOT EXISTS ` + ident(schema),
		`SET search_path TO ` + ident(schema),
		create + ` users (id serial PRIMARY KEY, tag text NOT NULL)`,
		create + ` posts (id serial PRIMARY KEY, user_id int REFERENCES users (id))`,
		`INSERT INTO users (tag) VALUES ('` + tag + `')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("%s: %w", sql, err)
		}
	}
	rows, err := conn.Query(ctx, "SELECT tag FROM users ORDER BY id")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// TestCreateSchemaMigrator runs the reference migrator's statements for two
// environments at once through PgBouncer in transaction mode, twice each
// (two deploys): with AllowCreateSchema every statement passes, each
// environment's tables are in its own schema only, and public keeps only
// production's table. Without it, the first statement fails as the issue
// reports.
func TestCreateSchemaMigrator(t *testing.T) {
	f := setup(t)
	cfg := f.cfg(IsolationSchema)
	cfg.AppHost = f.c.BouncerHostPort()

	off := f.provider(cfg)
	k0 := key("cs-off")
	c0 := f.ensure(off, k0)
	_, err := drizzleMigrate(f.ctx, connect(f.ctx, t, c0.Vars["DATABASE_URL"]), c0.Vars["DATABASE_SCHEMA"], "x", true)
	if pgCode(err) != "42501" || !strings.Contains(err.Error(), "permission denied for database") {
		t.Fatalf("without AllowCreateSchema: %v; want permission denied for database", err)
	}

	cfg.AllowCreateSchema = true
	cfg.MaxConns = 4
	p := f.provider(cfg)
	keys := []string{key("cs-a"), key("cs-b")}
	conns := make([]database.Conn, len(keys))
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(keys))
	for i, k := range keys {
		wg.Add(1)
		go func() { // the first Ensures race to install the trigger
			defer wg.Done()
			c, err := p.Ensure(f.ctx, database.Target{Key: k})
			if err != nil {
				errs <- err
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			schema := conns[i].Vars["DATABASE_SCHEMA"]
			for run := range 2 {
				conn := connect(f.ctx, t, conns[i].Vars["DATABASE_URL"])
				tags, err := drizzleMigrate(f.ctx, conn, schema, k, run == 0)
				if err != nil {
					errs <- fmt.Errorf("%s, run %d: %w", k, run, err)
					return
				}
				if want := slices.Repeat([]string{k}, run+1); !slices.Equal(tags, want) {
					errs <- fmt.Errorf("%s, run %d: users holds %v; want %v", k, run, tags, want)
				}
				conn.Close(f.ctx)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	got := scalar[[]string](f, f.db, `SELECT COALESCE(array_agg(schemaname || '.' || tablename ORDER BY schemaname, tablename), '{}')
		FROM pg_tables WHERE tablename IN ('users', 'posts', 'orders')`)
	var want []string
	for _, k := range keys {
		n := mustName(t, k)
		want = append(want, n+".posts", n+".users")
	}
	want = append(want, "public.orders")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("tables %v; want %v", got, want)
	}
	for _, k := range keys {
		n := mustName(t, k)
		if tags := scalar[[]string](f, f.db, "SELECT array_agg(tag ORDER BY id) FROM "+ident(n, "users")); !slices.Equal(tags, []string{k, k}) {
			t.Errorf("%s.users holds %v; want two rows of %s", n, tags, k)
		}
	}
	f.checkProduction()

	// Teardown takes the privilege and the schema; the default still holds none.
	for _, k := range keys {
		if err := p.Drop(f.ctx, p.Items(database.Target{Key: k})); err != nil {
			t.Fatal(err)
		}
		if n := mustName(t, k); f.exists("role", n) || f.exists("schema", n) {
			t.Errorf("%s left after Drop", n)
		}
	}
	if scalar[bool](f, f.db, "SELECT has_database_privilege($1, current_database(), 'CREATE')", mustName(t, k0)) {
		t.Error("without AllowCreateSchema the role may CREATE on the database")
	}
}

// TestCreateSchemaRefusals: with AllowCreateSchema a preview role may not
// create another environment's schema (made yet or not), any other schema,
// rename its own, or create a publication; the environment whose name it
// tried is then made normally. A schema it drops and makes again is its
// own and keeps its marker.
func TestCreateSchemaRefusals(t *testing.T) {
	f := setup(t)
	cfg := f.cfg(IsolationSchema)
	cfg.AllowCreateSchema = true
	p := f.provider(cfg)
	k1, k2 := key("cs-pr"), key("cs-pr")
	n1, n2 := mustName(t, k1), mustName(t, k2)
	c1 := f.ensure(p, k1)
	conn := connect(f.ctx, t, c1.Vars["DATABASE_URL"])
	checkDenied(t, f.ctx, conn, map[string]string{
		"CREATE SCHEMA " + ident(n2):                                 "42501",
		"CREATE SCHEMA IF NOT EXISTS " + ident(n2):                   "42501",
		"CREATE SCHEMA preview_lookalike":                            "42501",
		"CREATE SCHEMA drizzle":                                      "42501",
		"CREATE SCHEMA " + ident(n2) + " AUTHORIZATION " + ident(n1): "42501",
		"ALTER SCHEMA " + ident(n1) + " RENAME TO " + ident(n2):      "42501",
		"CREATE SCHEMA IF NOT EXISTS " + ident(n1):                   "",
	})
	_, err := conn.Exec(f.ctx, "CREATE SCHEMA "+ident(n2))
	if err == nil || !strings.Contains(err.Error(), "may create no schema but its own") {
		t.Errorf("CREATE SCHEMA %s: %v; want previewd's refusal", n2, err)
	}
	if code := sqlState(f.ctx, conn, "CREATE TABLE t (id int)"); code != "" {
		t.Fatalf("CREATE TABLE: %s", code)
	}
	checkDenied(t, f.ctx, conn, map[string]string{"CREATE PUBLICATION pub_" + strings.ReplaceAll(k1, "-", "_") + " FOR TABLE t": "42501"})
	for _, n := range []string{n2, "preview_lookalike", "drizzle"} {
		if f.exists("schema", n) {
			t.Errorf("schema %s exists", n)
		}
	}
	if got := scalar[string](f, f.db, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", n1); got != n1 {
		t.Errorf("%s owned by %s", n1, got)
	}

	// The environment pr-1 tried to take is made as usual, and stays its own.
	c2 := f.ensure(p, k2)
	if code := sqlState(f.ctx, conn, "CREATE SCHEMA IF NOT EXISTS "+ident(n2)); code != "" {
		t.Errorf("CREATE SCHEMA IF NOT EXISTS of an existing schema: %s", code)
	}
	checkDenied(t, f.ctx, conn, map[string]string{"CREATE TABLE " + ident(n2, "x") + " (id int)": "42501"})
	if got := scalar[string](f, f.db, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", n2); got != n2 {
		t.Errorf("%s owned by %s", n2, got)
	}
	_ = c2

	// Its own schema, dropped and made again by the app, is marked as its
	// own: Ensure adopts it.
	if _, err := conn.Exec(f.ctx, "DROP SCHEMA "+ident(n1)+" CASCADE; CREATE SCHEMA "+ident(n1)); err != nil {
		t.Fatal(err)
	}
	role := scalar[string](f, f.db, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", n1)
	if got := scalar[string](f, f.db, "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1", n1); got != role {
		t.Errorf("recreated schema's comment %q; want the role's %q", got, role)
	}
	f.ensure(p, k1)

	// previewd's own role is not confined.
	f.admin("CREATE SCHEMA admin_made; DROP SCHEMA admin_made")
}

// TestCreateSchemaTakenOver: a schema with another environment's name that
// a preview role owns (as it could with CREATE on the database and no
// trigger), even with a marker its owner wrote, is refused by Ensure with
// ErrForeign, with or without AllowCreateSchema; the role's teardown drops
// it, with every other schema it owns (pg_namespace.nspowner), and so does
// Collect for an orphaned role.
func TestCreateSchemaTakenOver(t *testing.T) {
	f := setup(t)
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprint("allow=", allow), func(t *testing.T) {
			cfg := f.cfg(IsolationSchema)
			cfg.AllowCreateSchema = allow
			p := f.provider(cfg)
			k1, k2, k3 := key("cs-own"), key("cs-own"), key("cs-own")
			n1, n2, n3 := mustName(t, k1), mustName(t, k2), mustName(t, k3)
			f.ensure(p, k1)
			f.ensure(p, k3)
			f.admin(fmt.Sprintf("CREATE SCHEMA %s AUTHORIZATION %s; COMMENT ON SCHEMA %s IS '%s'",
				ident(n2), ident(n1), ident(n2), mark{key: k2}.String()))
			f.admin(fmt.Sprintf("CREATE SCHEMA %s AUTHORIZATION %s; CREATE TABLE %s (id int)", ident(n3+"_extra"), ident(n3), ident(n3+"_extra", "t")))
			_, err := p.Ensure(f.ctx, database.Target{Key: k2})
			if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "another environment's role") {
				t.Fatalf("Ensure(%s) of a schema %s owns: %v; want ErrForeign", k2, n1, err)
			}
			if f.exists("role", n2) {
				t.Errorf("role %s made", n2)
			}

			if err := p.Drop(f.ctx, p.Items(database.Target{Key: k1})); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{n1, n2} {
				if f.exists("schema", n) {
					t.Errorf("schema %s left after dropping %s", n, n1)
				}
			}
			f.ensure(p, k2) // now free

			if _, err := p.Collect(f.ctx, map[string]bool{k2: true}); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{n3, n3 + "_extra"} {
				if f.exists("schema", n) {
					t.Errorf("schema %s left after collecting %s", n, n3)
				}
			}
			if !f.exists("schema", n2) {
				t.Errorf("live %s collected", n2)
			}
		})
	}
}

// TestCreateSchemaNonSuperuser: an admin that may not create event triggers
// cannot turn AllowCreateSchema on (Ensure fails, saying why, and grants
// nothing); once a superuser's previewd installed the trigger, it can.
// Turned off again, Ensure takes the privilege back.
func TestCreateSchemaNonSuperuser(t *testing.T) {
	f := setup(t)
	role := "pv_admin_" + itoa(int32(keySeq.Add(1)))
	f.admin("CREATE ROLE " + role + " LOGIN CREATEROLE CREATEDB PASSWORD 'pv-pass'; ALTER DATABASE " + f.db + " OWNER TO " + role)
	t.Cleanup(func() {
		f.c.Exec(context.Background(), f.db, "ALTER DATABASE "+f.db+" OWNER TO admin; DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	cfg := f.cfg(IsolationSchema)
	cfg.AllowCreateSchema = true
	cfg.AdminURL = f.c.DSN(role, "pv-pass", f.db)
	ns := f.provider(cfg)
	k := key("cs-ns")
	_, err := ns.Ensure(f.ctx, database.Target{Key: k})
	if !errors.Is(err, errConfine) {
		t.Fatalf("Ensure as a non-superuser: %v; want %v", err, errConfine)
	}
	if f.exists("role", mustName(t, k)) {
		t.Fatal("role made without the trigger")
	}

	super := cfg
	super.AdminURL = f.c.AdminURLFor(f.db)
	sp, ks := f.provider(super), key("cs-su")
	f.ensure(sp, ks)
	defer func() { // before the cleanups' Collect as the non-superuser, who may not drop it
		if err := sp.Drop(f.ctx, sp.Items(database.Target{Key: ks})); err != nil {
			t.Error(err)
		}
	}()
	f.ensure(ns, k)
	createOK := func() bool {
		return scalar[bool](f, f.db, "SELECT has_database_privilege($1, current_database(), 'CREATE')", mustName(t, k))
	}
	if !createOK() {
		t.Fatal("no CREATE on the database with AllowCreateSchema")
	}

	cfg.AllowCreateSchema = false
	f.ensure(f.provider(cfg), k)
	if createOK() {
		t.Fatal("CREATE on the database kept with AllowCreateSchema off")
	}
}

// TestConfineReinstalled: a disabled or altered trigger is put back by the
// next Ensure.
func TestConfineReinstalled(t *testing.T) {
	f := setup(t)
	cfg := f.cfg(IsolationSchema)
	cfg.AllowCreateSchema = true
	p := f.provider(cfg)
	k := key("cs-re")
	f.ensure(p, k)
	f.admin("ALTER EVENT TRIGGER " + confineTrigger + " DISABLE")
	f.ensure(p, k)
	conn := connect(f.ctx, t, f.ensure(p, k).Vars["DATABASE_URL"])
	checkDenied(t, f.ctx, conn, map[string]string{"CREATE SCHEMA drizzle": "42501"})
	f.admin("CREATE OR REPLACE FUNCTION previewd." + confineFunc + "() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$")
	f.ensure(p, k)
	checkDenied(t, f.ctx, conn, map[string]string{"CREATE SCHEMA drizzle": "42501"})
}
