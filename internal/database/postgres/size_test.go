package postgres

import (
	"testing"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// TestSize: a preview's size is its schema's tables (or its database);
// production's is its database; it grows with the rows written.
func TestSize(t *testing.T) {
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		t.Run(iso, func(t *testing.T) {
			f := setup(t)
			p := f.provider(f.cfg(iso))
			target := database.Target{Key: "pr-5"}
			if _, err := p.Ensure(f.ctx, target); err != nil {
				t.Fatal(err)
			}
			before, err := p.Size(f.ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			name, _ := Name("pr-5")
			db, table := f.db, name+".big"
			if iso == IsolationDatabase {
				db, table = name, "public.big"
			}
			conn, err := f.c.Connect(f.ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(f.ctx, `CREATE TABLE `+table+` AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g`); err != nil {
				t.Fatal(err)
			}
			conn.Close(f.ctx)
			after, err := p.Size(f.ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			if after-before < 4e6 {
				t.Errorf("size %d → %d after writing 4 MB", before, after)
			}
			if n, err := p.Size(f.ctx, database.Target{Key: env.ProductionKey, Production: true}); err != nil || n <= 0 {
				t.Errorf("production's size %d, %v", n, err)
			}
			if _, err := p.Size(f.ctx, database.Target{Key: "Bad Key"}); err == nil {
				t.Error("a bad key has a size")
			}
			if err := p.Drop(f.ctx, p.Items(target)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
