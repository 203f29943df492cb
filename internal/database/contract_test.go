package database_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/database/postgres"
	"github.com/previewd/previewd/internal/database/sqlite"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// kind is one provider under the contract, with what only it knows.
type kind struct {
	p database.Provider
	// prodItems name production's data as items of the provider's kinds.
	prodItems []env.Item
	// prodAlive reports whether production's data is still there.
	prodAlive func(t *testing.T) bool
	// foreign makes, for key, an object previewd did not make, and returns
	// the items that name it and whether it is still there.
	foreign func(t *testing.T, key string) ([]env.Item, func() bool)
}

// TestContract holds every provider to the rules the reconciler relies
// on, whatever the runtime: production is never in an inventory and never
// dropped, not even when asked by name or collected; objects previewd did
// not make are refused; Ensure and Drop are idempotent; and Drop names, in
// a *LeftError, exactly what it did not remove.
func TestContract(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) kind{
		"sqlite":            openSQLite,
		"postgres/schema":   func(t *testing.T) kind { return openPostgres(t, postgres.IsolationSchema, false) },
		"postgres/database": func(t *testing.T) kind { return openPostgres(t, postgres.IsolationDatabase, false) },
		"postgres/tiered":   func(t *testing.T) kind { return openPostgres(t, postgres.IsolationSchema, true) },
	} {
		t.Run(name, func(t *testing.T) {
			k := open(t)
			ctx := t.Context()
			prod := database.Target{Key: env.ProductionKey, Production: true}
			if items := k.p.Items(prod); len(items) != 0 {
				t.Errorf("production has inventory items: %v", items)
			}
			if _, err := k.p.Ensure(ctx, prod); err != nil {
				t.Fatalf("Ensure(production): %v", err)
			}

			pr := database.Target{Key: "pr-7"}
			if len(k.p.Items(pr)) == 0 {
				t.Fatal("no inventory items for pr-7")
			}
			c1, err := k.p.Ensure(ctx, pr)
			if err != nil {
				t.Fatal(err)
			}
			c2, err := k.p.Ensure(ctx, pr)
			if err != nil || !maps.Equal(c1.Vars, c2.Vars) {
				t.Fatalf("second Ensure: %v, %v; want %v", err, c2.Vars, c1.Vars)
			}
			for i := range 2 {
				if err := k.p.Drop(ctx, k.p.Items(pr)); err != nil {
					t.Fatalf("Drop #%d: %v", i+1, err)
				}
			}

			checkLeft(t, k.p.Drop(ctx, k.prodItems), k.prodItems, database.ErrProduction)
			fitems, alive := k.foreign(t, "pr-8")
			checkLeft(t, k.p.Drop(ctx, fitems), fitems, database.ErrForeign)
			if !alive() {
				t.Error("Drop removed an object previewd did not make")
			}

			if r, ok := k.p.(database.Resetter); ok {
				checkReset(t, k, r)
			}
			if c, ok := k.p.(database.Collector); ok {
				if _, err := k.p.Ensure(ctx, database.Target{Key: "pr-9"}); err != nil {
					t.Fatal(err)
				}
				removed, err := c.Collect(ctx, map[string]bool{})
				if err != nil || len(removed) == 0 {
					t.Errorf("Collect = %v, %v; want pr-9's objects", removed, err)
				}
				if !alive() {
					t.Error("Collect removed an object previewd did not make")
				}
			}
			if !k.prodAlive(t) {
				t.Fatal("production's data is gone")
			}
		})
	}
}

// checkReset holds a Resetter to its contract: production is refused and
// has no reset items; a reset gives prepare another database than the
// current one and returns the current variables; a failing prepare's
// error is Reset's; and Drop of ResetItems afterwards finds nothing left
// to refuse.
func checkReset(t *testing.T, k kind, r database.Resetter) {
	t.Helper()
	ctx := t.Context()
	for _, prod := range []database.Target{{Key: env.ProductionKey, Production: true}, {Key: env.ProductionKey}} {
		called := false
		if _, err := r.Reset(ctx, prod, func(context.Context, database.Conn) error { called = true; return nil }); !errors.Is(err, database.ErrProduction) || called {
			t.Errorf("Reset(%+v) = %v, prepare called %v; want ErrProduction", prod, err, called)
		}
		if items := r.ResetItems(prod); len(items) != 0 {
			t.Errorf("production has reset items: %v", items)
		}
	}
	pr := database.Target{Key: "pr-6"}
	cur, err := k.p.Ensure(ctx, pr)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ResetItems(pr)) == 0 {
		t.Error("no reset items for pr-6")
	}
	for _, it := range r.ResetItems(pr) {
		if inventory.Has(k.p.Items(pr), inventory.IDOf(it)) {
			t.Errorf("reset item %s is also one of Items", inventory.IDOf(it))
		}
	}
	got, err := r.Reset(ctx, pr, func(_ context.Context, next database.Conn) error {
		if next.Vars["DATABASE_URL"] == cur.Vars["DATABASE_URL"] && next.Name == cur.Name {
			return errors.New("prepare got the current database")
		}
		return nil
	})
	if err != nil || !maps.Equal(got.Vars, cur.Vars) {
		t.Errorf("Reset = %v, %v; want %v", got.Vars, err, cur.Vars)
	}
	boom := errors.New("boom")
	if _, err := r.Reset(ctx, pr, func(context.Context, database.Conn) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Reset with a failing prepare = %v; want its error", err)
	}
	if err := k.p.Drop(ctx, r.ResetItems(pr)); err != nil {
		t.Errorf("Drop(ResetItems) after resets = %v", err)
	}
	if err := k.p.Drop(ctx, k.p.Items(pr)); err != nil {
		t.Errorf("Drop after resets = %v", err)
	}
}

// checkLeft fails unless err is a *LeftError wrapping reason that names
// every one of items.
func checkLeft(t *testing.T, err error, items []env.Item, reason error) {
	t.Helper()
	var le *database.LeftError
	if !errors.As(err, &le) || !errors.Is(err, reason) {
		t.Errorf("Drop(%v) = %v; want a LeftError wrapping %v", items, err, reason)
		return
	}
	for _, it := range items {
		if !inventory.Has(le.Items, inventory.IDOf(it)) {
			t.Errorf("Drop did not name %s as left: %v", inventory.IDOf(it), err)
		}
	}
}

func openSQLite(t *testing.T) kind {
	dir, elsewhere := t.TempDir(), t.TempDir()
	p, err := sqlite.New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	prodFile := filepath.Join(dir, env.ProductionKey+".sqlite")
	return kind{
		p:         p,
		prodItems: []env.Item{{Kind: env.ItemSQLite, Name: env.ProductionKey}},
		prodAlive: func(t *testing.T) bool { _, err := os.Stat(prodFile); return err == nil },
		foreign: func(t *testing.T, key string) ([]env.Item, func() bool) {
			f := filepath.Join(elsewhere, "notes.txt")
			if err := os.WriteFile(f, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			data := fmt.Appendf(nil, `{"path":%q}`, f)
			return []env.Item{{Kind: env.ItemSQLite, Name: key, Data: data}},
				func() bool { _, err := os.Stat(f); return err == nil }
		},
	}
}

// openPostgres returns the postgres provider of isolation or, when
// tiered, the tiered provider whose default that is.
func openPostgres(t *testing.T, isolation string, tiered bool) kind {
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)
	ctx := t.Context()
	if err := c.Exec(ctx, db, "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	o := postgres.Options{
		AdminURL:       c.AdminURLFor(db),
		Isolation:      isolation,
		PasswordSecret: []byte("contract-test"),
	}
	p, err := postgres.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	var under database.Provider = p
	if tiered {
		d, err := postgres.NewTiered(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		under = d
	}
	t.Cleanup(func() { // roles are the cluster's: leave none to the next test
		if _, err := p.Collect(context.WithoutCancel(ctx), nil); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	count := func(sql string, args ...any) int {
		conn, err := c.Connect(context.WithoutCancel(ctx), db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var n int
		if err := conn.QueryRow(context.WithoutCancel(ctx), sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return kind{
		p: under,
		prodItems: []env.Item{
			{Kind: env.ItemRole, Name: pgtest.AdminUser},
			{Kind: env.ItemDatabase, Name: db},
			{Kind: env.ItemSchema, Name: "public"},
		},
		prodAlive: func(t *testing.T) bool {
			return count("SELECT count(*)::int FROM orders") == 1
		},
		foreign: func(t *testing.T, key string) ([]env.Item, func() bool) {
			name, err := postgres.Name(key)
			if err != nil {
				t.Fatal(err)
			}
			// Made by a person, not by previewd: no marker.
			sql, q := "CREATE SCHEMA "+name, "SELECT count(*)::int FROM pg_namespace WHERE nspname = $1"
			if isolation == postgres.IsolationDatabase {
				sql, q = "CREATE DATABASE "+name, "SELECT count(*)::int FROM pg_database WHERE datname = $1"
			}
			if err := c.Exec(ctx, db, sql); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				drop := "DROP SCHEMA IF EXISTS " + name
				if isolation == postgres.IsolationDatabase {
					drop = "DROP DATABASE IF EXISTS " + name
				}
				if err := c.Exec(context.WithoutCancel(ctx), db, drop); err != nil {
					t.Errorf("dropping the foreign object: %v", err)
				}
			})
			return under.Items(database.Target{Key: key}), func() bool { return count(q, name) == 1 }
		},
	}
}
