package database_test

import (
	"context"
	"slices"
	"sort"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/database/postgres"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestTieredPostgres, on the real server: an environment provisioned as a
// schema, then re-provisioned as a clone (the old tier's items dropped,
// the new one ensured, as the reconciler does), has no schema left and a
// database cloned from the template; its app's URL reaches the clone. A
// live environment of one tier keeps its objects when another's are
// collected, and production is never in an inventory.
func TestTieredPostgres(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := t.Context()
	admin, tmpl := c.NewDatabase(t), c.NewDatabase(t)
	if err := c.Exec(ctx, tmpl, "CREATE TABLE seed (id int); INSERT INTO seed VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	d, err := postgres.NewTiered(ctx, postgres.Options{
		AdminURL:       c.AdminURLFor(admin),
		Isolation:      postgres.IsolationSchema,
		Template:       tmpl,
		PasswordSecret: []byte("tier-test"),
		Instance:       "tiertest",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	t.Cleanup(func() {
		if _, err := d.Collect(context.WithoutCancel(ctx), nil); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if d.Default() != env.DBTierSchema {
		t.Fatalf("default tier %q, want schema", d.Default())
	}
	count := func(db, sql string, args ...any) int {
		t.Helper()
		conn, err := c.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var n int
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	name, err := postgres.Name("pr-21")
	if err != nil {
		t.Fatal(err)
	}

	asSchema := database.Target{Key: "pr-21", Tier: env.DBTierSchema}
	items := d.Items(asSchema)
	conn, err := d.Ensure(ctx, asSchema)
	if err != nil {
		t.Fatal(err)
	}
	app, err := pgx.Connect(ctx, conn.Vars["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, "CREATE TABLE notes (id int); INSERT INTO notes VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	app.Close(ctx)
	if n := count(admin, "SELECT count(*)::int FROM pg_namespace WHERE nspname = $1", name); n != 1 {
		t.Fatalf("no schema %s after Ensure at tier schema", name)
	}

	// Re-provisioned as a clone.
	if err := d.Drop(ctx, items); err != nil {
		t.Fatal(err)
	}
	asClone := database.Target{Key: "pr-21", Tier: env.DBTierClone}
	conn, err = d.Ensure(ctx, asClone)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(admin, "SELECT count(*)::int FROM pg_namespace WHERE nspname = $1", name); n != 0 {
		t.Errorf("the schema %s is still there after the change to clone", name)
	}
	if n := count("postgres", "SELECT count(*)::int FROM pg_database WHERE datname = $1", name); n != 1 {
		t.Fatalf("no database %s after Ensure at tier clone", name)
	}
	app, err = pgx.Connect(ctx, conn.Vars["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := app.QueryRow(ctx, "SELECT count(*)::int FROM seed").Scan(&rows); err != nil || rows != 2 {
		t.Errorf("the clone's seed table: %d rows, %v; want the template's 2", rows, err)
	}
	var notes bool
	if err := app.QueryRow(ctx, "SELECT to_regclass('notes') IS NOT NULL").Scan(&notes); err != nil || notes {
		t.Errorf("the clone has the old schema's table: %v %v", notes, err)
	}
	app.Close(ctx)

	// Collect: a live schema-tier and a live clone-tier environment keep
	// theirs; the clone goes once its key is not live.
	if _, err := d.Ensure(ctx, database.Target{Key: "pr-22"}); err != nil {
		t.Fatal(err)
	}
	removed, err := d.Collect(ctx, map[string]bool{"pr-21": true, "pr-22": true})
	if err != nil || len(removed) != 0 {
		t.Fatalf("Collect with both live = %v, %v; want nothing", removed, err)
	}
	removed, err = d.Collect(ctx, map[string]bool{"pr-22": true})
	sort.Strings(removed)
	if want := []string{"database " + name, "role " + name}; err != nil || !slices.Equal(removed, want) {
		t.Errorf("Collect with pr-22 live = %v, %v; want %v", removed, err, want)
	}
	name22, _ := postgres.Name("pr-22")
	if n := count(admin, "SELECT count(*)::int FROM pg_namespace WHERE nspname = $1", name22); n != 1 {
		t.Error("Collect took the live schema-tier environment's schema")
	}
	if items := d.Items(database.Target{Key: env.ProductionKey, Production: true, Tier: env.DBTierClone}); items != nil {
		t.Errorf("production has items at tier clone: %v", items)
	}
}
