package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// migrations holds one directory of numbered SQL files per dialect,
// migrations/<dialect>/NNNN_name.sql; both directories have the same
// versions, so a version means the same schema on either backend.
//
//go:embed migrations
var migrations embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s: want NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(migrations, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrate applies the migrations not yet recorded in schema_migrations, all
// in one transaction under the dialect's lock, so replicas starting at once
// apply each exactly once and none sees a half-migrated schema. A store
// whose schema is newer than this build knows is refused.
func (s *Store) migrate(ctx context.Context) error {
	migs, err := loadMigrations(s.d.name)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting migration: %w", err)
	}
	defer tx.Rollback() // a no-op once committed
	if s.d.migrateLock != "" {
		if _, err := tx.ExecContext(ctx, s.d.migrateLock); err != nil {
			return fmt.Errorf("locking for migration: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at BIGINT NOT NULL
)`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	applied, err := appliedVersions(ctx, tx)
	if err != nil {
		return err
	}
	if len(applied) == 0 && s.d.baseline != nil {
		// A store made before versioned migrations: record what its
		// tables already hold.
		v, err := s.d.baseline(ctx, tx)
		if err != nil {
			return fmt.Errorf("reading the schema of an unversioned store: %w", err)
		}
		for _, m := range migs {
			if m.version <= v {
				if err := s.recordVersion(ctx, tx, m.version); err != nil {
					return err
				}
				applied[m.version] = true
			}
		}
	}
	latest := migs[len(migs)-1].version
	for v := range applied {
		if v > latest {
			return fmt.Errorf("store schema version %d is newer than this previewd knows (%d)", v, latest)
		}
	}
	for _, m := range migs {
		if applied[m.version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("applying migration %s: %w", m.name, err)
		}
		if err := s.recordVersion(ctx, tx, m.version); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing migration: %w", err)
	}
	return nil
}

func appliedVersions(ctx context.Context, tx *sql.Tx) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("reading schema_migrations: %w", err)
		}
		out[v] = true
	}
	return out, rows.Err()
}

func (s *Store) recordVersion(ctx context.Context, tx *sql.Tx, v int) error {
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), v, ms(s.now())); err != nil {
		return fmt.Errorf("recording migration %d: %w", v, err)
	}
	return nil
}

// sqliteBaseline returns the migration version an unversioned SQLite store
// is at: 0 for an empty file, 1 for the first release's tables, 2 once
// they have the source column.
func sqliteBaseline(ctx context.Context, tx *sql.Tx) (int, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'environments'`).Scan(&n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('environments') WHERE name = 'source'`).Scan(&n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 1, nil
	}
	return 2, nil
}
