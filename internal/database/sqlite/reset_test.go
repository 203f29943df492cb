package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// openDB opens path with the real SQLite driver.
func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fill is the "migrate and seed" of these tests: it opens the database it
// is given, writes one row and closes it.
func fill(value string) func(context.Context, database.Conn) error {
	return func(ctx context.Context, c database.Conn) error {
		db, err := sql.Open("sqlite", c.Vars["DATABASE_PATH"])
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.ExecContext(ctx, "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS items (v text); DELETE FROM items; INSERT INTO items VALUES (?)", value)
		return err
	}
}

func read(t *testing.T, db *sql.DB) string {
	t.Helper()
	var v string
	if err := db.QueryRow("SELECT v FROM items").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReset: the fresh file is built beside the current one, swapped in
// atomically after prepare, and an app that keeps the old file open reads
// the old data until it reopens the path; a failing prepare keeps the
// current file; production is refused; leftovers are removed by the next
// Reset, by Drop of ResetItems and by Collect.
func TestReset(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	tg := database.Target{Key: "pr-1"}
	cur, err := p.Ensure(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := fill("old")(ctx, cur); err != nil {
		t.Fatal(err)
	}
	app := openDB(t, cur.Vars["DATABASE_PATH"])
	app.SetMaxOpenConns(1)
	if v := read(t, app); v != "old" {
		t.Fatalf("app reads %q", v)
	}

	got, err := p.Reset(ctx, tg, func(ctx context.Context, next database.Conn) error {
		if next.Vars["DATABASE_PATH"] != p.NextPath("pr-1") {
			t.Errorf("prepare got %v", next.Vars)
		}
		if err := fill("new")(ctx, next); err != nil {
			return err
		}
		if v := read(t, app); v != "old" {
			t.Errorf("during prepare the app reads %q; want old", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Vars["DATABASE_PATH"] != cur.Vars["DATABASE_PATH"] {
		t.Errorf("Reset returned %v; want %v", got.Vars, cur.Vars)
	}
	// The app's open connection keeps the old inode: the reconciler must
	// restart it.
	if v := read(t, app); v != "old" {
		t.Errorf("the app's open connection reads %q; want old (it keeps the old file)", v)
	}
	if v := read(t, openDB(t, cur.Vars["DATABASE_PATH"])); v != "new" {
		t.Errorf("a reopened app reads %q; want new", v)
	}
	if _, err := os.Stat(p.NextPath("pr-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the fresh file is still beside: %v", err)
	}

	// A failing prepare keeps the current file.
	boom := errors.New("migration failed")
	if _, err := p.Reset(ctx, tg, func(ctx context.Context, next database.Conn) error {
		fill("broken")(ctx, next)
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Reset = %v; want the prepare's error", err)
	}
	if v := read(t, openDB(t, cur.Vars["DATABASE_PATH"])); v != "new" {
		t.Errorf("after a failed reset the database reads %q; want new", v)
	}
	if _, err := os.Stat(p.NextPath("pr-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed reset left its file: %v", err)
	}

	// A prepare that leaves a log with data in it is refused.
	if _, err := p.Reset(ctx, tg, func(ctx context.Context, next database.Conn) error {
		return os.WriteFile(next.Vars["DATABASE_PATH"]+"-journal", []byte("hot"), 0o644)
	}); err == nil {
		t.Error("a reset whose prepare left a hot journal succeeded")
	}

	// Production.
	for _, pt := range []database.Target{{Key: env.ProductionKey}, {Key: "pr-1", Production: true}} {
		if _, err := p.Reset(ctx, pt, fill("x")); !errors.Is(err, database.ErrProduction) {
			t.Errorf("Reset(%+v) = %v; want ErrProduction", pt, err)
		}
		if items := p.ResetItems(pt); len(items) > 0 {
			t.Errorf("ResetItems(%+v) = %v", pt, items)
		}
	}

	// Leftovers of a crash (the fresh file and its log).
	crashed := func() {
		t.Helper()
		for _, s := range []string{"", "-wal"} {
			if err := os.WriteFile(p.NextPath("pr-1")+s, []byte("half"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	gone := func(what string) {
		t.Helper()
		for _, s := range []string{"", "-wal"} {
			if _, err := os.Stat(p.NextPath("pr-1") + s); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after %s, %s%s is still there", what, filepath.Base(p.NextPath("pr-1")), s)
			}
		}
	}
	crashed()
	if _, err := p.Reset(ctx, tg, fill("newer")); err != nil {
		t.Fatal(err)
	}
	gone("the next Reset")
	crashed()
	if err := p.Drop(ctx, p.ResetItems(tg)); err != nil {
		t.Fatal(err)
	}
	gone("Drop")
	crashed()
	if _, err := p.Collect(ctx, map[string]bool{"pr-1": true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.NextPath("pr-1")); err != nil {
		t.Errorf("Collect removed a live environment's reset file: %v", err)
	}
	removed, err := p.Collect(ctx, map[string]bool{})
	if err != nil {
		t.Fatal(err)
	}
	gone("Collect")
	t.Logf("collected %v", removed)

	// Drop refuses a reset item whose path is another file.
	data, _ := json.Marshal(itemData{Path: p.Path("pr-2")})
	if err := p.Drop(ctx, []env.Item{{Kind: env.ItemSQLite, Name: "pr-2$next", Data: data}}); !errors.Is(err, database.ErrForeign) {
		t.Errorf("Drop of a forged reset item = %v; want ErrForeign", err)
	}
}
