package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

func execFile(t *testing.T, path, stmts string) {
	t.Helper()
	db, err := open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmts); err != nil {
		t.Fatal(err)
	}
}

// TestRehearseSQLite: the migrations run on a copy of production's file;
// the report has their time and what they dropped; production and the
// preview's own file are untouched and the copy is gone.
func TestRehearseSQLite(t *testing.T) {
	dir := t.TempDir()
	p, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.Ensure(ctx, database.Target{Key: env.ProductionKey, Production: true}); err != nil {
		t.Fatal(err)
	}
	prod := p.Path(env.ProductionKey)
	execFile(t, prod, `CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, legacy_id INTEGER);
		INSERT INTO users (email, legacy_id) VALUES ('a@example.com', 1), ('b@example.com', 2);
		CREATE TABLE orders (id INTEGER PRIMARY KEY); INSERT INTO orders VALUES (1), (2), (3);`)
	target := database.Target{Key: "pr-1"}
	var saw string
	rep, err := p.Rehearse(ctx, target, database.RehearseOptions{}, func(ctx context.Context, c database.Conn) error {
		saw = c.Vars["DATABASE_PATH"]
		db, err := sql.Open("sqlite", c.Vars["DATABASE_PATH"])
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec("ALTER TABLE users DROP COLUMN legacy_id; DROP TABLE orders; CREATE TABLE notes (id INTEGER)")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if saw != p.RehearsalPath("pr-1") || rep.From != "a copy of production's database file" || rep.Error != "" {
		t.Fatalf("migrate saw %q; report %+v", saw, rep)
	}
	got := rep.Summary()
	for _, want := range []string{"drops table `orders` (3 rows)", "drops column `users.legacy_id`"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
	if _, err := os.Stat(saw); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the rehearsal's file is still there: %v", err)
	}
	tb, err := tables(ctx, prod)
	if err != nil || tb["orders"].rows != 3 || len(tb["users"].cols) != 3 {
		t.Errorf("production changed: %+v %v", tb, err)
	}
	// A failing migration is in the report, not Rehearse's error.
	rep, err = p.Rehearse(ctx, target, database.RehearseOptions{}, func(context.Context, database.Conn) error {
		return errors.New("no such table: nope")
	})
	if err != nil || rep.Error == "" || strings.Join(rep.Judge(nil), ",") != "failed" {
		t.Errorf("failing migration: %+v, %v", rep, err)
	}
	// Production is never rehearsed; the rehearsal's item is dropped by
	// Drop and refused for another file.
	if _, err := p.Rehearse(ctx, database.Target{Key: env.ProductionKey, Production: true}, database.RehearseOptions{}, nil); !errors.Is(err, database.ErrProduction) {
		t.Errorf("production: %v", err)
	}
	items := p.RehearsalItems(target)
	if len(items) != 1 || p.Drop(ctx, items) != nil {
		t.Errorf("items %v", items)
	}
	forged := env.Item{Kind: env.ItemSQLite, Name: "pr-1$rehearsal", Data: []byte(`{"path":"` + prod + `"}`)}
	if err := p.Drop(ctx, []env.Item{forged}); !errors.Is(err, database.ErrForeign) {
		t.Errorf("forged item: %v", err)
	}
	if _, err := os.Stat(prod); err != nil {
		t.Errorf("production's file: %v", err)
	}
}
