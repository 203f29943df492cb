package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestOpensConfiguredStore: with store.kind postgres the daemon keeps its
// state in the database of store.postgres.url, not in a file in dataDir.
func TestOpensConfiguredStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)

	dir := t.TempDir()
	yaml := fmt.Sprintf("forge: {git: {url: %s}}\ndatabase: {kind: none}\nstore: {kind: postgres, postgres: {url: '${STORE_URL}'}}\n", filepath.Join(dir, "repo"))
	vars := map[string]string{"STORE_URL": c.AdminURLFor(db)}
	cfg, err := config.Parse([]byte(yaml), dir, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Store().Close()
	if err := d.Store().Upsert(ctx, env.Source{Key: "feat", Kind: env.KindBranch, Branch: "feat"}); err != nil {
		t.Fatal(err)
	}
	conn, err := c.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var branch string
	if err := conn.QueryRow(ctx, `SELECT branch FROM environments WHERE key = 'feat'`).Scan(&branch); err != nil || branch != "feat" {
		t.Errorf("environment in the configured database: %q, %v", branch, err)
	}
	if matches, _ := filepath.Glob(filepath.Join(cfg.DataDir, "previewd.db*")); len(matches) != 0 {
		t.Errorf("a SQLite store was made too: %v", matches)
	}
}
