package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, to read the schema

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

var _ database.Rehearser = (*Provider)(nil)

// RehearsalPath returns the file the rehearsal of key runs on.
func (p *Provider) RehearsalPath(key string) string { return p.auxPath(rehearsalFile, key) }

// RehearsalItems implements database.Rehearser: the rehearsal's file,
// named key$rehearsal in the inventory.
func (p *Provider) RehearsalItems(t database.Target) []env.Item {
	return p.auxItems(rehearsalFile, t)
}

// Rehearse implements database.Rehearser for SQLite: time and destructive
// changes only. The migrations run on a copy of production's database
// file (VACUUM INTO, a consistent copy while production writes), or of
// the seed, or on an empty file; the report has their wall time and the
// tables and columns that were in the copy before and are not after.
// SQLite has no table locks, relfilenodes or statistics to report, and
// no statement times.
func (p *Provider) Rehearse(ctx context.Context, t database.Target, o database.RehearseOptions, migrate func(context.Context, database.Conn) error) (rep env.Rehearsal, err error) {
	if t.Production || t.Key == env.ProductionKey {
		return env.Rehearsal{}, fmt.Errorf("sqlite: production's migrations are not rehearsed: %w", database.ErrProduction)
	}
	if err := env.CheckKey(t.Key); err != nil {
		return env.Rehearsal{}, err
	}
	path := p.RehearsalPath(t.Key)
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return env.Rehearsal{}, fmt.Errorf("sqlite: %w", err)
	}
	if err := removeAll(path); err != nil {
		return env.Rehearsal{}, fmt.Errorf("sqlite: removing an earlier rehearsal: %w", err)
	}
	defer func() {
		if rerr := removeAll(path); rerr != nil {
			err = errors.Join(err, fmt.Errorf("sqlite: removing the rehearsal's file: %w", rerr))
		}
	}()
	rep = env.Rehearsal{Engine: "sqlite", StatementCount: -1, At: time.Now().UTC(),
		Observed: "wall time, and the tables and columns dropped (SQLite has no table locks or rewrites to report)"}
	prod := p.Path(env.ProductionKey)
	switch _, serr := os.Stat(prod); {
	case serr == nil:
		rep.From = "a copy of production's database file"
		if err := vacuumInto(ctx, prod, path); err != nil {
			return env.Rehearsal{}, err
		}
	case p.seed != "":
		rep.From = "the seed " + filepath.Base(p.seed)
		if err := p.create(path); err != nil {
			return env.Rehearsal{}, err
		}
	default:
		rep.From = "an empty database"
		if err := p.create(path); err != nil {
			return env.Rehearsal{}, err
		}
	}
	before, err := tables(ctx, path)
	if err != nil {
		return env.Rehearsal{}, err
	}
	start := time.Now()
	merr := migrate(ctx, database.Conn{Vars: map[string]string{"DATABASE_PATH": path, "DATABASE_URL": "sqlite:" + path}, Name: filepath.Base(path)})
	rep.Seconds = time.Since(start).Seconds()
	if ctx.Err() != nil {
		return env.Rehearsal{}, ctx.Err()
	}
	if merr != nil {
		rep.Error = merr.Error()
	}
	after, err := tables(ctx, path)
	if err != nil {
		return env.Rehearsal{}, err
	}
	judgeSQLite(&rep, before, after)
	return rep, nil
}

// table is one table of a SQLite schema.
type table struct {
	rows int64
	cols []string
}

// judgeSQLite adds the dropped tables and columns to rep.
func judgeSQLite(rep *env.Rehearsal, before, after map[string]table) {
	names := make([]string, 0, len(before))
	for n := range before {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := before[n]
		a, ok := after[n]
		if !ok {
			rep.Tables = append(rep.Tables, env.RehearsalTable{Name: n, Rows: b.rows, Dropped: true})
			rep.Findings = append(rep.Findings, env.RehearsalFinding{Kind: env.FindingDropTable, Table: n, Detail: fmt.Sprintf("%d rows", b.rows)})
			continue
		}
		var dropped []string
		for _, c := range b.cols {
			if !slices.Contains(a.cols, c) {
				dropped = append(dropped, c)
			}
		}
		if len(dropped) > 0 {
			rep.Tables = append(rep.Tables, env.RehearsalTable{Name: n, Rows: b.rows})
		}
		for _, c := range dropped {
			rep.Findings = append(rep.Findings, env.RehearsalFinding{Kind: env.FindingDropColumn, Table: n, Column: c})
		}
	}
	if rep.Error != "" {
		rep.Findings = append(rep.Findings, env.RehearsalFinding{Kind: env.FindingFailed, Detail: strings.SplitN(rep.Error, "\n", 2)[0]})
	}
}

// open opens a SQLite file through the driver, read-only if ro.
func open(path string, ro bool) (*sql.DB, error) {
	q := url.Values{"_pragma": {"busy_timeout(5000)"}}
	if ro {
		q.Set("mode", "ro")
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: opening %s: %w", filepath.Base(path), err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// vacuumInto writes a consistent copy of src to dst.
func vacuumInto(ctx context.Context, src, dst string) error {
	db, err := open(src, true)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("sqlite: copying production's database: %w", err)
	}
	return nil
}

// tables reads path's tables, their columns and row counts.
func tables(ctx context.Context, path string) (map[string]table, error) {
	db, err := open(path, true)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: reading the schema: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: reading the schema: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: reading the schema: %w", err)
	}
	out := map[string]table{}
	for _, n := range names {
		var t table
		q := `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+q).Scan(&t.rows); err != nil {
			return nil, fmt.Errorf("sqlite: counting %s: %w", n, err)
		}
		crows, err := db.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", n)
		if err != nil {
			return nil, fmt.Errorf("sqlite: reading %s's columns: %w", n, err)
		}
		for crows.Next() {
			var c string
			if err := crows.Scan(&c); err != nil {
				crows.Close()
				return nil, err
			}
			t.cols = append(t.cols, c)
		}
		crows.Close()
		out[n] = t
	}
	return out, nil
}
