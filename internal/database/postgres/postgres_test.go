package postgres

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
)

// denied lists statements an environment's role must not be able to run,
// with the SQLSTATE each must fail with.
func checkDenied(t *testing.T, ctx context.Context, conn *pgx.Conn, stmts map[string]string) {
	t.Helper()
	for stmt, want := range stmts {
		if got := sqlState(ctx, conn, stmt); got != want {
			t.Errorf("%s: got SQLSTATE %q; want %q", stmt, got, want)
		}
	}
}

func TestSchemaIsolation(t *testing.T) {
	f := setup(t)
	cfg := f.cfg(IsolationSchema)
	cfg.AppHost = f.c.BouncerHostPort()
	p := f.provider(cfg)
	ka, kb := key("iso-a"), key("iso-b")
	ca, cb := f.ensure(p, ka), f.ensure(p, kb)
	na, nb := mustName(t, ka), mustName(t, kb)

	if ca.Vars["DATABASE_SCHEMA"] != na || ca.Name != na {
		t.Fatalf("conn = %+v; want schema %s", ca, na)
	}
	// The role: least privilege, its own search_path, marked.
	var super, createdb, createrole, inherit, repl, bypass bool
	var limit int32
	var comment string
	var settings []string
	conn, _ := f.c.Connect(f.ctx, f.db)
	defer conn.Close(f.ctx)
	err := conn.QueryRow(f.ctx, `SELECT rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolreplication, rolbypassrls, rolconnlimit,
		shobj_description(oid, 'pg_authid'), COALESCE((SELECT setconfig FROM pg_db_role_setting WHERE setrole = r.oid), '{}')
		FROM pg_roles r WHERE rolname = $1`, na).Scan(&super, &createdb, &createrole, &inherit, &repl, &bypass, &limit, &comment, &settings)
	if err != nil {
		t.Fatal(err)
	}
	if super || createdb || createrole || inherit || repl || bypass || limit != 5 {
		t.Errorf("role %s: super=%v createdb=%v createrole=%v inherit=%v replication=%v bypassrls=%v limit=%d", na, super, createdb, createrole, inherit, repl, bypass, limit)
	}
	if comment != "previewd:env="+ka {
		t.Errorf("role comment %q", comment)
	}
	if len(settings) != 1 || settings[0] != "search_path="+na {
		t.Errorf("role settings %q; want search_path=%s", settings, na)
	}
	if owner := scalar[string](f, f.db, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", na); owner != na {
		t.Errorf("schema %s owned by %s", na, owner)
	}

	direct := strings.Replace(ca.Vars["DATABASE_URL"], f.c.BouncerHostPort(), f.c.HostPort(), 1)
	if direct == ca.Vars["DATABASE_URL"] {
		t.Fatalf("DATABASE_URL %s does not point at appHost %s", redact(direct), f.c.BouncerHostPort())
	}
	b := connect(f.ctx, t, cb.Vars["DATABASE_URL"])
	if code := sqlState(f.ctx, b, "CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('b')"); code != "" {
		t.Fatalf("b creating its table: %s", code)
	}
	for via, url := range map[string]string{"direct": direct, "pgbouncer": ca.Vars["DATABASE_URL"]} {
		t.Run(via, func(t *testing.T) {
			a := connect(f.ctx, t, url)
			var schema, user string
			if err := a.QueryRow(f.ctx, "SELECT current_schema(), current_user").Scan(&schema, &user); err != nil {
				t.Fatal(err)
			}
			if schema != na || user != na {
				t.Fatalf("current_schema() = %q, current_user = %q; want %s", schema, user, na)
			}
			tbl := "t_" + strings.ReplaceAll(via, "-", "_")
			if code := sqlState(f.ctx, a, "CREATE TABLE "+tbl+" (id int)"); code != "" {
				t.Fatalf("creating a table in its own schema: %s", code)
			}
			if s := scalar[string](f, f.db, "SELECT schemaname::text FROM pg_tables WHERE tablename = $1", tbl); s != na {
				t.Errorf("table %s landed in %s; want %s", tbl, s, na)
			}
			checkDenied(t, f.ctx, a, map[string]string{
				"SELECT * FROM public.orders":                      "42501",
				"INSERT INTO public.orders VALUES (99, 1)":         "42501",
				"UPDATE public.orders SET total = 0":               "42501",
				"DELETE FROM public.orders":                        "42501",
				"TRUNCATE public.orders":                           "42501",
				"DROP TABLE public.orders":                         "42501",
				"CREATE TABLE public.evil (id int)":                "42501",
				"SELECT * FROM " + nb + ".secrets":                 "42501",
				"INSERT INTO " + nb + ".secrets VALUES ('a')":      "42501",
				"CREATE TABLE " + nb + ".evil (id int)":            "42501",
				"DROP SCHEMA " + nb + " CASCADE":                   "42501",
				"CREATE SCHEMA evil":                               "42501",
				"SET ROLE admin":                                   "42501",
				"SET ROLE " + nb:                                   "42501",
				"ALTER ROLE " + nb + " PASSWORD 'x'":               "42501",
				"CREATE ROLE evil":                                 "42501",
				"CREATE DATABASE evil":                             "42501",
				"SET search_path TO public; CREATE TABLE x(i int)": "42501",
			})
		})
	}
	f.checkProduction()
	if n := scalar[int64](f, f.db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 1 {
		t.Errorf("public has %d tables; want only production's", n)
	}
}

func TestDatabaseIsolation(t *testing.T) {
	f := setup(t)
	tpl := f.c.NewDatabase(t)
	if err := f.c.Exec(f.ctx, tpl, `CREATE TYPE mood AS ENUM ('ok', 'sad');
		CREATE TABLE public.seed (id serial PRIMARY KEY, name text, m mood);
		INSERT INTO public.seed (name, m) VALUES ('one', 'ok'), ('two', 'sad');
		CREATE VIEW public.seed_names AS SELECT name FROM public.seed;
		CREATE FUNCTION public.double(i int) RETURNS int LANGUAGE sql AS 'SELECT i * 2';
		CREATE SCHEMA extra; CREATE TABLE extra.more (id int GENERATED ALWAYS AS IDENTITY);`); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg(IsolationDatabase)
	cfg.Template = tpl
	p := f.provider(cfg)
	ka, kb := key("db-a"), key("db-b")
	ca, cb := f.ensure(p, ka), f.ensure(p, kb)
	na, nb := mustName(t, ka), mustName(t, kb)
	if ca.Vars["DATABASE_SCHEMA"] != "public" || ca.Name != na || !strings.HasSuffix(ca.Vars["DATABASE_URL"], "/"+na+"?sslmode=disable") {
		t.Fatalf("conn = %s %v", ca.Name, redact(ca.Vars["DATABASE_URL"]))
	}
	if c := scalar[string](f, f.db, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", na); c != "previewd:env="+ka {
		t.Errorf("database comment %q", c)
	}

	a := connect(f.ctx, t, ca.Vars["DATABASE_URL"])
	var db, schema string
	var n int64
	if err := a.QueryRow(f.ctx, "SELECT current_database(), current_schema(), (SELECT count(*) FROM seed)").Scan(&db, &schema, &n); err != nil {
		t.Fatal(err)
	}
	if db != na || schema != "public" || n != 2 {
		t.Fatalf("db=%s schema=%s seed rows=%d", db, schema, n)
	}
	// The role owns what it cloned, so its migrations can change it.
	for _, stmt := range []string{
		"ALTER TABLE seed ADD COLUMN note text",
		"INSERT INTO seed (name, m) VALUES ('three', 'ok')",
		"CREATE OR REPLACE VIEW seed_names AS SELECT name, note FROM seed",
		"ALTER TYPE mood ADD VALUE 'glad'",
		"CREATE OR REPLACE FUNCTION double(i int) RETURNS int LANGUAGE sql AS 'SELECT i + i'",
		"INSERT INTO extra.more DEFAULT VALUES",
		"CREATE TABLE mine (id int)",
	} {
		if code := sqlState(f.ctx, a, stmt); code != "" {
			t.Errorf("%s: %s", stmt, code)
		}
	}
	// The template is unchanged.
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM seed"); n != 2 {
		t.Errorf("template has %d rows", n)
	}
	// Neither environment may connect to the other's database; PUBLIC has
	// no access to either.
	for _, c := range []struct {
		as database.Conn
		db string
	}{{ca, nb}, {cb, na}} {
		u, _ := url.Parse(c.as.Vars["DATABASE_URL"])
		u.Path = "/" + c.db
		if _, err := pgx.Connect(f.ctx, u.String()); err == nil || !strings.Contains(err.Error(), "42501") {
			t.Errorf("%s connecting to %s: %v; want permission denied", u.User.Username(), c.db, err)
		}
	}
	if acl := scalar[string](f, f.db, "SELECT datacl::text FROM pg_database WHERE datname = $1", na); strings.Contains(acl, "{=") || strings.Contains(acl, ",=") {
		t.Errorf("PUBLIC keeps rights on %s: %s", na, acl)
	}
	// Production's data stays out of reach.
	u, _ := url.Parse(ca.Vars["DATABASE_URL"])
	u.Path = "/" + f.db
	prod := connect(f.ctx, t, u.String())
	checkDenied(t, f.ctx, prod, map[string]string{
		"SELECT * FROM public.orders":              "42501",
		"INSERT INTO public.orders VALUES (99, 1)": "42501",
		"CREATE TABLE public.evil (id int)":        "42501",
	})
	f.checkProduction()
}

func TestIdempotent(t *testing.T) {
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		t.Run(iso, func(t *testing.T) {
			f := setup(t)
			cfg := f.cfg(iso)
			cfg.AppHost = f.c.BouncerHostPort()
			p := f.provider(cfg)
			k := key("idem")
			c1 := f.ensure(p, k)
			conn := connect(f.ctx, t, c1.Vars["DATABASE_URL"])
			if code := sqlState(f.ctx, conn, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row')"); code != "" {
				t.Fatal(code)
			}
			// A second Ensure (e.g. `previewd db create` from CI), from a
			// new provider with the same secret, keeps the data and
			// returns the same working URL, and the open client through
			// PgBouncer keeps working.
			p2 := f.provider(cfg)
			c2 := f.ensure(p2, k)
			if c1.Vars["DATABASE_URL"] != c2.Vars["DATABASE_URL"] || c1.Vars["DATABASE_SCHEMA"] != c2.Vars["DATABASE_SCHEMA"] {
				t.Fatalf("second Ensure changed the vars: %v vs %v", redact(c1.Vars["DATABASE_URL"]), redact(c2.Vars["DATABASE_URL"]))
			}
			for _, c := range []*pgx.Conn{conn, connect(f.ctx, t, c2.Vars["DATABASE_URL"])} {
				var v string
				if err := c.QueryRow(f.ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "row" {
					t.Fatalf("after second Ensure: %q, %v", v, err)
				}
			}
			items := p.Items(database.Target{Key: k})
			if len(items) != 2 {
				t.Fatalf("Items = %v", items)
			}
			conn.Close(f.ctx)
			for i := 0; i < 2; i++ {
				if err := p.Drop(f.ctx, items); err != nil {
					t.Fatalf("Drop #%d: %v", i+1, err)
				}
			}
			name := mustName(t, k)
			for _, kind := range []string{"role", "schema", "database"} {
				if f.exists(kind, name) {
					t.Errorf("%s %s exists after Drop", kind, name)
				}
			}
			if _, err := pgx.Connect(f.ctx, strings.Replace(c1.Vars["DATABASE_URL"], f.c.BouncerHostPort(), f.c.HostPort(), 1)); err == nil {
				t.Error("the dropped role can still log in")
			}
			f.checkProduction()
		})
	}
}

func TestHostileKeys(t *testing.T) {
	f := setup(t)
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		p := f.provider(f.cfg(iso))
		for _, k := range hostileKeys {
			if k == env.ProductionKey {
				continue // production: see TestProductionNeverDropped
			}
			if _, err := p.Ensure(f.ctx, database.Target{Key: k}); err == nil {
				t.Errorf("Ensure(%q) succeeded", k)
			}
			if items := p.Items(database.Target{Key: k}); items != nil {
				t.Errorf("Items(%q) = %v", k, items)
			}
			var hostile []env.Item
			for _, kind := range []env.ItemKind{env.ItemRole, env.ItemSchema, env.ItemDatabase} {
				hostile = append(hostile, env.Item{Kind: kind, Name: k})
				if _, ok := KeyOf(Prefix + k); !ok { // e.g. "a_b": preview_a_b is a-b's name
					hostile = append(hostile, env.Item{Kind: kind, Name: Prefix + k})
				}
			}
			if err := p.Drop(f.ctx, hostile); !errors.Is(err, database.ErrProduction) {
				t.Errorf("Drop(%q): %v; want ErrProduction", k, err)
			}
		}
		// Refused before any SQL: the provider never took a connection.
		if n := p.pool.Stat().AcquireCount(); n != 0 {
			t.Errorf("%s: %d connections were acquired for hostile keys; want none", iso, n)
		}
	}
	// Hostile branch names become safe keys, and then safe names.
	p := f.provider(f.cfg(IsolationSchema))
	for _, branch := range []string{`a'; DROP SCHEMA public CASCADE; --`, `x"; DROP ROLE admin; --`, "$$ SELECT 1 $$", strings.Repeat("ä", 300), "public", "pg_catalog"} {
		k := env.BranchKey(branch)
		c := f.ensure(p, k)
		if !strings.HasPrefix(c.Name, Prefix) {
			t.Errorf("branch %q: name %q", branch, c.Name)
		}
		if !f.exists("schema", c.Name) || !f.exists("role", c.Name) {
			t.Errorf("branch %q: %s not made", branch, c.Name)
		}
	}
	if !f.exists("schema", "public") || !f.exists("role", "admin") {
		t.Fatal("public or admin is gone")
	}
	f.checkProduction()
}

func TestProductionNeverDropped(t *testing.T) {
	f := setup(t)
	// A production database whose name looks like a preview name, with a
	// forged marker: still never dropped.
	shop := key("shop")
	prodLike := mustName(t, shop)
	if err := f.c.CreateDatabase(f.ctx, prodLike); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.c.DropDatabase(context.Background(), prodLike)
		f.c.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+prodLike)
	})
	forged := "'previewd:env=" + shop + "'"
	if err := f.c.Exec(f.ctx, prodLike, `CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);
		CREATE ROLE `+prodLike+` LOGIN; COMMENT ON ROLE `+prodLike+` IS `+forged+`;
		COMMENT ON DATABASE `+prodLike+` IS `+forged+`; ALTER DATABASE `+prodLike+` OWNER TO `+prodLike+`;
		COMMENT ON SCHEMA public IS 'previewd:env=public'`); err != nil {
		t.Fatal(err)
	}
	f.admin("COMMENT ON SCHEMA public IS 'previewd:env=public'")

	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		for _, admin := range []string{f.db, prodLike} {
			cfg := f.cfg(iso)
			cfg.AdminURL = f.c.AdminURLFor(admin)
			p := f.provider(cfg)
			before := scalar[int64](f, f.db, "SELECT count(*) FROM pg_roles")

			// Production: nothing to record, nothing made, its own URL.
			for _, tg := range []database.Target{{Key: env.ProductionKey, Production: true}, {Key: env.ProductionKey}, {Key: "main", Production: true}} {
				if items := p.Items(tg); items != nil {
					t.Errorf("Items(%+v) = %v", tg, items)
				}
				c, err := p.Ensure(f.ctx, tg)
				if err != nil {
					t.Fatal(err)
				}
				u, _ := url.Parse(c.Vars["DATABASE_URL"])
				if u.Path != "/"+admin || u.User.Username() != "admin" || c.Vars["DATABASE_SCHEMA"] != "public" {
					t.Errorf("production conn: %s %v", redact(c.Vars["DATABASE_URL"]), c.Vars)
				}
			}
			if after := scalar[int64](f, f.db, "SELECT count(*) FROM pg_roles"); after != before {
				t.Errorf("Ensure(production) made %d roles", after-before)
			}

			var items []env.Item
			for _, n := range []string{f.db, admin, "admin", "public", "pg_catalog", "information_schema", "postgres",
				"template0", "template1", "preview_production", "PUBLIC", `public"; --`, "preview_public\x00"} {
				for _, kind := range []env.ItemKind{env.ItemRole, env.ItemSchema, env.ItemDatabase} {
					items = append(items, env.Item{Kind: kind, Name: n, Data: []byte(`{"database":"` + f.db + `"}`)})
				}
			}
			if admin == prodLike {
				for _, kind := range []env.ItemKind{env.ItemRole, env.ItemSchema, env.ItemDatabase} {
					items = append(items, env.Item{Kind: kind, Name: prodLike})
				}
			}
			err := p.Drop(f.ctx, items)
			if !errors.Is(err, database.ErrProduction) {
				t.Fatalf("Drop(production items): %v", err)
			}
			for _, it := range items {
				if !strings.Contains(err.Error(), string(it.Kind)) {
					t.Errorf("Drop did not refuse %s %q", it.Kind, it.Name)
				}
			}
			if admin == prodLike {
				if _, err := p.Ensure(f.ctx, database.Target{Key: shop}); !errors.Is(err, database.ErrProduction) {
					t.Errorf("Ensure(%s) with production database %s: %v", shop, prodLike, err)
				}
			}
			// To a provider whose production database is another, the
			// forged marker makes prodLike look like an environment; keep
			// it live there.
			live := map[string]bool{shop: admin != prodLike}
			if removed, err := p.Collect(f.ctx, live); err != nil {
				t.Fatalf("Collect: %v", err)
			} else {
				for _, r := range removed {
					if strings.HasSuffix(r, " "+prodLike) {
						t.Errorf("Collect removed %s", r)
					}
				}
			}
			f.checkProduction()
			if n := scalar[int64](f, prodLike, "SELECT count(*) FROM orders"); n != 1 {
				t.Fatalf("%s lost its data", prodLike)
			}
			for _, o := range [][2]string{{"schema", "public"}, {"role", "admin"}, {"database", f.db}, {"database", prodLike}, {"role", prodLike}} {
				if !f.exists(o[0], o[1]) {
					t.Fatalf("%s %s is gone", o[0], o[1])
				}
			}
		}
	}
	// Unforge the markers before the providers' cleanups collect.
	if err := f.c.Exec(f.ctx, prodLike, "COMMENT ON DATABASE "+prodLike+" IS NULL; COMMENT ON ROLE "+prodLike+" IS NULL"); err != nil {
		t.Fatal(err)
	}
}

// TestCreateOnPublicRefused: where PUBLIC may create in schema public
// (PostgreSQL before 15, or granted by hand), an environment's role could
// too, so Ensure refuses, says how to fix it, and leaves nothing behind.
func TestCreateOnPublicRefused(t *testing.T) {
	f := setup(t)
	p := f.provider(f.cfg(IsolationSchema))
	f.admin("GRANT CREATE ON SCHEMA public TO PUBLIC")
	k := key("pubcreate")
	_, err := p.Ensure(f.ctx, database.Target{Key: k})
	if err == nil || !strings.Contains(err.Error(), "REVOKE CREATE ON SCHEMA public FROM PUBLIC") {
		t.Fatalf("Ensure: %v; want a refusal naming the fix", err)
	}
	if s := f.state(mustName(t, k), k); s != "" {
		t.Fatalf("left %q", s)
	}
	f.admin("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
	f.ensure(p, k)
}

func TestForeignObjects(t *testing.T) {
	f := setup(t)
	p := f.provider(f.cfg(IsolationSchema))
	k := key("foreign")
	n := mustName(t, k)
	// Made by a person, not by previewd: no marker.
	f.admin("CREATE SCHEMA " + n + "; CREATE TABLE " + n + ".keep (id int)")
	t.Cleanup(func() { f.c.Exec(context.Background(), f.db, "DROP SCHEMA IF EXISTS "+n+" CASCADE") })
	if _, err := p.Ensure(f.ctx, database.Target{Key: k}); !errors.Is(err, ErrForeign) {
		t.Fatalf("Ensure over a foreign schema: %v; want ErrForeign", err)
	}
	if f.exists("role", n) {
		t.Error("Ensure left a role after refusing")
	}
	if err := p.Drop(f.ctx, []env.Item{{Kind: env.ItemSchema, Name: n}}); !errors.Is(err, ErrForeign) {
		t.Fatalf("Drop of a foreign schema: %v; want ErrForeign", err)
	}
	if removed, err := p.Collect(f.ctx, nil); err != nil || len(removed) != 0 {
		t.Fatalf("Collect: %v %v", removed, err)
	}
	if !f.exists("schema", n) {
		t.Fatal("foreign schema dropped")
	}
}

// TestDropNamesWhatIsLeft: one Drop of several environments' items drops
// what it may and names, in a LeftError, exactly what it did not drop
// (refused and foreign items), for the caller to keep recorded.
func TestDropNamesWhatIsLeft(t *testing.T) {
	f := setup(t)
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		t.Run(iso, func(t *testing.T) {
			p := f.provider(f.cfg(iso))
			gone, foreign := key("left-ok"), key("left-foreign")
			f.ensure(p, gone)
			// Made by a person, not by previewd: no marker.
			fn := mustName(t, foreign)
			if iso == IsolationSchema {
				f.admin("CREATE SCHEMA " + fn)
				t.Cleanup(func() { f.c.Exec(context.Background(), f.db, "DROP SCHEMA IF EXISTS "+fn+" CASCADE") })
			} else {
				if err := f.c.CreateDatabase(f.ctx, fn); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.c.DropDatabase(context.Background(), fn) })
			}
			prod := env.Item{Kind: env.ItemRole, Name: "admin"}
			refused := append(p.Items(database.Target{Key: foreign}), prod)
			items := append(p.Items(database.Target{Key: gone}), refused...)

			err := p.Drop(f.ctx, items)
			var le *database.LeftError
			if !errors.As(err, &le) || !errors.Is(err, ErrForeign) || !errors.Is(err, database.ErrProduction) {
				t.Fatalf("Drop = %v; want a LeftError wrapping ErrForeign and ErrProduction", err)
			}
			left := database.Left(items, err)
			if len(left) != len(refused) {
				t.Errorf("left %v; want %v", left, refused)
			}
			for _, it := range refused {
				if !inventory.Has(left, inventory.IDOf(it)) {
					t.Errorf("%s is not named as left: %v", inventory.IDOf(it), left)
				}
			}
			for _, kind := range []string{"role", "schema", "database"} {
				if f.exists(kind, mustName(t, gone)) {
					t.Errorf("%s of %s survived Drop", kind, gone)
				}
			}
			if iso == IsolationSchema && !f.exists("schema", fn) || iso == IsolationDatabase && !f.exists("database", fn) {
				t.Error("the foreign object was dropped")
			}
			f.checkProduction()
		})
	}
}

func TestCollect(t *testing.T) {
	f := setup(t)
	ps := f.provider(f.cfg(IsolationSchema))
	pd := f.provider(f.cfg(IsolationDatabase))
	live, dead := key("live"), key("dead")
	f.ensure(ps, live)
	f.ensure(ps, dead)
	deadDB := key("deaddb")
	f.ensure(pd, deadDB)
	// A schema whose role is already gone (e.g. dropped by hand).
	orphan := key("orphan")
	on := mustName(t, orphan)
	f.admin("CREATE SCHEMA " + on + "; COMMENT ON SCHEMA " + on + " IS 'previewd:env=" + orphan + "'")
	removed, err := ps.Collect(f.ctx, map[string]bool{live: true})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(removed, ",")
	for _, want := range []string{"role " + mustName(t, dead), "schema " + mustName(t, dead), "database " + mustName(t, deadDB), "role " + mustName(t, deadDB), "schema " + on} {
		if !strings.Contains(got, want) {
			t.Errorf("Collect removed %q; want %s among them", got, want)
		}
	}
	if strings.Contains(got, mustName(t, live)) {
		t.Errorf("Collect removed the live environment: %s", got)
	}
	if !f.exists("schema", mustName(t, live)) || !f.exists("role", mustName(t, live)) {
		t.Error("live environment gone")
	}
	for _, o := range [][2]string{{"schema", dead}, {"role", dead}, {"database", deadDB}, {"role", deadDB}, {"schema", orphan}} {
		if f.exists(o[0], mustName(t, o[1])) {
			t.Errorf("%s of %s still exists", o[0], o[1])
		}
	}
	f.checkProduction()
}

func TestTemplateBusy(t *testing.T) {
	f := setup(t)
	tpl := f.c.NewDatabase(t)
	if err := f.c.Exec(f.ctx, tpl, "CREATE TABLE seed AS SELECT 1 AS id"); err != nil {
		t.Fatal(err)
	}
	holderCfg, _ := pgx.ParseConfig(f.c.AdminURLFor(tpl))
	holderCfg.RuntimeParams["application_name"] = "busy-holder"
	holder, err := pgx.ConnectConfig(f.ctx, holderCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(f.ctx)
	pid := holder.PgConn().PID()

	cfg := f.cfg(IsolationDatabase)
	cfg.Template = tpl
	cfg.TemplateWait = 300 * time.Millisecond
	p := f.provider(cfg)
	k := key("busy")
	start := time.Now()
	_, err = p.Ensure(f.ctx, database.Target{Key: k})
	var busy *TemplateBusyError
	if !errors.As(err, &busy) {
		t.Fatalf("Ensure with a busy template: %v; want TemplateBusyError", err)
	}
	// The upper bound tells TemplateWait from the 30 s default, with room
	// for a loaded machine: not a measure of how soon it gives up.
	if d := time.Since(start); d < 250*time.Millisecond || d > 20*time.Second {
		t.Errorf("gave up after %s; want about 300ms (TemplateWait), not the 30s default", d)
	}
	msg := err.Error()
	for _, want := range []string{tpl, "busy-holder", "pid " + itoa(int32(pid)), `user "admin"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if pgCode(err) != "55006" {
		t.Errorf("error does not wrap SQLSTATE 55006: %v", err)
	}
	if f.exists("database", mustName(t, k)) {
		t.Error("database made despite the error")
	}

	// With a longer wait, the retry succeeds once the holder leaves.
	cfg.TemplateWait = 10 * time.Second
	p2 := f.provider(cfg)
	go func() {
		time.Sleep(300 * time.Millisecond)
		holder.Close(context.Background())
	}()
	start = time.Now()
	c := f.ensure(p2, k)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("Ensure took %s; it cannot have waited for the holder", d)
	}
	conn := connect(f.ctx, t, c.Vars["DATABASE_URL"])
	if code := sqlState(f.ctx, conn, "SELECT id FROM seed"); code != "" {
		t.Fatalf("reading the clone: %s", code)
	}
}

func TestConnVars(t *testing.T) {
	base := Options{
		AdminURL:       "postgres://boss:s%40cret@db.internal:6543/shop?sslmode=require",
		PasswordSecret: []byte("x"),
	}
	p, err := New(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := p.Ensure(context.Background(), database.Target{Key: env.ProductionKey, Production: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Vars["DATABASE_URL"]; got != "postgres://boss:s%40cret@db.internal:6543/shop?sslmode=require" || c.Vars["DATABASE_SCHEMA"] != "public" || c.Name != "shop" {
		t.Errorf("production = %v %q", c.Vars, c.Name)
	}
	pc := p.conn("preview_pr_1", "shop", "preview_pr_1")
	u, err := url.Parse(pc.Vars["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if u.Host != "db.internal:6543" || u.User.Username() != "preview_pr_1" || pw != password([]byte("x"), "preview_pr_1") || u.Path != "/shop" || u.Query().Get("sslmode") != "require" {
		t.Errorf("env URL %s", pc.Vars["DATABASE_URL"])
	}

	withApp := base
	withApp.AppHost = "pgbouncer:6432"
	withApp.ProductionURL = "postgres://app:pw@prod:5432/shop"
	p2, err := New(t.Context(), withApp)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	c, _ = p2.Ensure(context.Background(), database.Target{Key: env.ProductionKey, Production: true})
	if c.Vars["DATABASE_URL"] != withApp.ProductionURL {
		t.Errorf("production with productionURL: %v", c.Vars)
	}
	pc = p2.conn("preview_pr_1", "shop", "preview_pr_1")
	if u, _ := url.Parse(pc.Vars["DATABASE_URL"]); u.Host != "pgbouncer:6432" {
		t.Errorf("appHost not used: %s", pc.Vars["DATABASE_URL"])
	}
	if err := p2.Drop(context.Background(), []env.Item{{Kind: env.ItemRole, Name: "app"}}); !errors.Is(err, database.ErrProduction) {
		t.Errorf("dropping productionURL's user: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	ok := Options{AdminURL: "postgres://a@h/db", PasswordSecret: []byte("s")}
	for name, tc := range map[string]struct {
		mod  func(*Options)
		want string
	}{
		"no secret":                    {mod: func(c *Options) { c.PasswordSecret = nil }, want: "PasswordSecret"},
		"bad isolation":                {mod: func(c *Options) { c.Isolation = "table" }, want: "Isolation"},
		"template is db":               {mod: func(c *Options) { c.Isolation = "database"; c.Template = "db" }, want: "Template"},
		"bad url":                      {mod: func(c *Options) { c.AdminURL = "postgres://a@h:notaport/db" }, want: "AdminURL"},
		"no url":                       {mod: func(c *Options) { c.AdminURL = "" }, want: "AdminURL"},
		"bad appHost":                  {mod: func(c *Options) { c.AppHost = "user@host:1" }, want: "AppHost"},
		"bad connlimit":                {mod: func(c *Options) { c.ConnectionLimit = -1 }, want: "ConnectionLimit"},
		"bad production":               {mod: func(c *Options) { c.ProductionURL = "postgres://a@h:x/db" }, want: "ProductionURL"},
		"bad maxconns":                 {mod: func(c *Options) { c.MaxConns = -1 }, want: "MaxConns"},
		"create schema, database mode": {mod: func(c *Options) { c.Isolation = "database"; c.AllowCreateSchema = true }, want: "AllowCreateSchema needs schema isolation"},
		"defaults":                     {mod: func(*Options) {}},
	} {
		t.Run(name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			p, err := New(t.Context(), c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				p.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error about %s", err, tc.want)
			}
		})
	}
}

// TestNonSuperuserAdmin runs both modes with an admin that, as on managed
// services, is not a superuser but has CREATEROLE and CREATEDB and owns the
// application's database.
func TestNonSuperuserAdmin(t *testing.T) {
	f := setup(t)
	role := "pv_admin_" + itoa(int32(keySeq.Add(1)))
	f.admin("CREATE ROLE " + role + " LOGIN CREATEROLE CREATEDB PASSWORD 'pv-pass'; ALTER DATABASE " + f.db + " OWNER TO " + role)
	t.Cleanup(func() {
		f.c.Exec(context.Background(), f.db, "ALTER DATABASE "+f.db+" OWNER TO admin; DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		t.Run(iso, func(t *testing.T) {
			cfg := f.cfg(iso)
			cfg.AdminURL = f.c.DSN(role, "pv-pass", f.db)
			p, err := New(f.ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			k := key("nonsuper")
			c := f.ensure(p, k)
			conn := connect(f.ctx, t, c.Vars["DATABASE_URL"])
			if code := sqlState(f.ctx, conn, "CREATE TABLE t (id int)"); code != "" {
				t.Fatalf("creating a table: %s", code)
			}
			if iso == IsolationSchema {
				checkDenied(t, f.ctx, conn, map[string]string{"SELECT * FROM public.orders": "42501"})
			}
			f.ensure(p, k)
			conn.Close(f.ctx)
			if err := p.Drop(f.ctx, p.Items(database.Target{Key: k})); err != nil {
				t.Fatal(err)
			}
			if f.exists("role", mustName(t, k)) {
				t.Error("role left")
			}
		})
	}
}

func mustName(t testing.TB, key string) string {
	t.Helper()
	n, err := Name(key)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }
