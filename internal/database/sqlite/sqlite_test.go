package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
)

func TestProvider(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	seed := filepath.Join(t.TempDir(), "seed.sqlite")
	os.WriteFile(seed, []byte("seed data"), 0o644)
	p, err := New(dir, seed)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Ensure(ctx, database.Target{Key: "pr-1"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pr-1.sqlite")
	if c.Vars["DATABASE_PATH"] != path || c.Vars["DATABASE_URL"] != "sqlite:"+path {
		t.Errorf("vars = %v", c.Vars)
	}
	if b, _ := os.ReadFile(path); string(b) != "seed data" {
		t.Errorf("not seeded: %q", b)
	}
	os.WriteFile(path, []byte("changed"), 0o644)
	if _, err := p.Ensure(ctx, database.Target{Key: "pr-1"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "changed" {
		t.Errorf("second Ensure replaced the data: %q", b)
	}
	if _, err := p.Ensure(ctx, database.Target{Key: "../etc"}); err == nil {
		t.Error("a bad key was accepted")
	}

	// Production: never in an inventory, never dropped, not even when
	// asked by name or collected.
	if _, err := p.Ensure(ctx, database.Target{Key: "production", Production: true}); err != nil {
		t.Fatal(err)
	}
	prod := filepath.Join(dir, "production.sqlite")
	if items := p.Items(database.Target{Key: "production", Production: true}); len(items) != 0 {
		t.Errorf("production has inventory items: %v", items)
	}
	forged := p.Items(database.Target{Key: "production"})
	if err := p.Drop(ctx, forged); !errors.Is(err, database.ErrProduction) {
		t.Errorf("Drop(production) = %v, want ErrProduction", err)
	}
	if _, err := p.Collect(ctx, map[string]bool{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(prod); err != nil {
		t.Fatalf("production's database is gone: %v", err)
	}
	// pr-1 was not live, so Collect removed it.
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Collect left an orphan: %v", err)
	}
	c2, _ := p.Ensure(ctx, database.Target{Key: "pr-2"})
	os.WriteFile(c2.Vars["DATABASE_PATH"]+"-wal", []byte("x"), 0o644)
	if err := p.Drop(ctx, p.Items(database.Target{Key: "pr-2"})); err != nil {
		t.Fatal(err)
	}
	if err := p.Drop(ctx, p.Items(database.Target{Key: "pr-2"})); err != nil {
		t.Errorf("second Drop: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "pr-2*"))
	if len(left) != 0 {
		t.Errorf("Drop left %v", left)
	}
}

// TestDropLeavesWhatItRefuses: Drop removes what it may, refuses
// production's file wherever it lives and any path that is not the item's
// own file, and names exactly what it left.
func TestDropLeavesWhatItRefuses(t *testing.T) {
	ctx := t.Context()
	dir, old := t.TempDir(), t.TempDir()
	p, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Ensure(ctx, database.Target{Key: "pr-1"}); err != nil {
		t.Fatal(err)
	}
	// Production's file in the directory an older config used, and a file
	// of someone else's.
	prodFile, notes := filepath.Join(old, "production.sqlite"), filepath.Join(old, "notes.txt")
	for _, f := range []string{prodFile, notes} {
		if err := os.WriteFile(f, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	item := func(key, path string) env.Item {
		data, err := json.Marshal(itemData{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return env.Item{Kind: env.ItemSQLite, Name: key, Data: data}
	}
	prod, foreign := item("pr-9", prodFile), item("pr-3", notes)
	items := append(p.Items(database.Target{Key: "pr-1"}), prod, foreign)

	err = p.Drop(ctx, items)
	var le *database.LeftError
	if !errors.As(err, &le) || !errors.Is(err, database.ErrProduction) || !errors.Is(err, database.ErrForeign) {
		t.Fatalf("Drop = %v; want a LeftError wrapping ErrProduction and ErrForeign", err)
	}
	left := database.Left(items, err)
	if len(left) != 2 || !inventory.Has(left, inventory.IDOf(prod)) || !inventory.Has(left, inventory.IDOf(foreign)) {
		t.Errorf("left %v; want the production and the foreign item", left)
	}
	for _, f := range []string{prodFile, notes} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("Drop removed %s: %v", f, err)
		}
	}
	if _, err := os.Stat(p.Path("pr-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pr-1's file is still there: %v", err)
	}
}

// TestCollectKeepsACreateInProgress: Collect, which runs while
// environments are being made, removes only stale temporary files, so it
// never fails a create in progress.
func TestCollectKeepsACreateInProgress(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	p, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	fresh, stale := filepath.Join(dir, ".new-1"), filepath.Join(dir, ".new-2")
	for _, f := range []string{fresh, stale} {
		if err := os.WriteFile(f, []byte("half a copy"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Collect(ctx, map[string]bool{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("Collect removed a create in progress: %v", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Collect kept a crashed create's file: %v", err)
	}
}

// TestCLIOwned: what `previewd db create` makes (the ForCLI provider) is
// never collected or dropped by serve's provider on the same directory;
// the CLI's drop removes it.
func TestCLIOwned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	serve, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	cli.ForCLI()
	ci := database.Target{Key: "ci-7"}
	if _, err := cli.Ensure(ctx, ci); err != nil {
		t.Fatal(err)
	}
	if _, err := serve.Ensure(ctx, database.Target{Key: "pr-1"}); err != nil {
		t.Fatal(err)
	}
	removed, err := serve.Collect(ctx, map[string]bool{})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != "pr-1.sqlite" {
		t.Errorf("serve collected %v; want pr-1.sqlite only", removed)
	}
	if err := serve.Drop(ctx, serve.Items(ci)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cli.Path("ci-7")); err != nil {
		t.Fatalf("serve removed the CLI's database: %v", err)
	}
	if err := cli.Drop(ctx, cli.Items(ci)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cli.Path("ci-7"), filepath.Join(dir, "ci-7.cli")} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the CLI's drop: %v", f, err)
		}
	}
}

// TestSize: the size of an environment's database is its file's.
func TestSize(t *testing.T) {
	ctx := context.Background()
	p, err := New(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Size(ctx, database.Target{Key: "pr-1"}); err == nil {
		t.Error("a database not made yet has a size")
	}
	if _, err := p.Ensure(ctx, database.Target{Key: "pr-1"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Path("pr-1"), make([]byte, 12345), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Size(ctx, database.Target{Key: "pr-1"}); err != nil || n != 12345 {
		t.Errorf("Size = %d, %v; want 12345", n, err)
	}
}
