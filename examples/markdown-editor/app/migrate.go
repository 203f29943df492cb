package app

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// migrationsFS holds the goose SQL migrations, one directory per dialect
// (migrations/sqlite and migrations/postgres) with the same versions in each.
//
//go:embed migrations
var migrationsFS embed.FS

// migrationsFor returns the migrations directory for a database kind.
func migrationsFor(kind string) (fs.FS, error) {
	return fs.Sub(migrationsFS, path.Join("migrations", kind))
}

// newMigrator returns a goose provider for d. It reads the embedded files but
// does not touch the database. It uses no goose globals.
func newMigrator(d *db) (*goose.Provider, error) {
	fsys, err := migrationsFor(d.kind)
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(d.dialect(), d.DB, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// migrationStatus is where the database stands against the embedded
// migrations.
type migrationStatus struct {
	current int64   // highest applied version, 0 if none
	latest  int64   // highest embedded version
	pending []int64 // embedded versions not applied, ascending
	unknown []int64 // applied versions this build does not know, ascending
}

// checkMigrations compares the versions applied to d with the embedded
// migrations. Unlike goose's own status methods it only reads: it never
// creates goose's version table, so serve needs no DDL rights and does not
// write to a database it refuses to use.
func checkMigrations(ctx context.Context, d *db, p *goose.Provider) (migrationStatus, error) {
	var st migrationStatus
	var want []int64
	for _, s := range p.ListSources() {
		want = append(want, s.Version)
	}
	slices.Sort(want)
	if len(want) > 0 {
		st.latest = want[len(want)-1]
	}

	store, err := database.NewStore(d.dialect(), goose.DefaultTablename)
	if err != nil {
		return st, err
	}
	applied := map[int64]bool{}
	exists, err := tableExists(ctx, d, goose.DefaultTablename)
	if err != nil {
		return st, fmt.Errorf("read migration state: %w", err)
	}
	if exists {
		rows, err := store.ListMigrations(ctx, d.DB)
		if err != nil {
			return st, fmt.Errorf("read migration state: %w", err)
		}
		for _, r := range rows {
			if r.IsApplied && r.Version > 0 {
				applied[r.Version] = true
			}
		}
	}
	for _, v := range want {
		if applied[v] {
			st.current = max(st.current, v)
		} else {
			st.pending = append(st.pending, v)
		}
	}
	for v := range applied {
		if !slices.Contains(want, v) {
			st.unknown = append(st.unknown, v)
			st.current = max(st.current, v)
		}
	}
	slices.Sort(st.unknown)
	return st, nil
}

// pendingMigrationsError is why serve refuses to start on a database that
// has not been migrated.
type pendingMigrationsError struct {
	status migrationStatus
	files  map[int64]string // version -> file name
}

func (e *pendingMigrationsError) Error() string {
	names := make([]string, len(e.status.pending))
	for i, v := range e.status.pending {
		names[i] = strconv.FormatInt(v, 10)
		if f := e.files[v]; f != "" {
			names[i] += " (" + f + ")"
		}
	}
	word := "migration"
	if len(names) > 1 {
		word = "migrations"
	}
	return fmt.Sprintf("database has pending %s: version %s; database is at version %d, this build expects %d; run the migrate command first",
		word, strings.Join(names, ", "), e.status.current, e.status.latest)
}

// sourceFiles maps each embedded migration version to its file name.
func sourceFiles(p *goose.Provider) map[int64]string {
	m := map[int64]string{}
	for _, s := range p.ListSources() {
		m[s.Version] = path.Base(s.Path)
	}
	return m
}

// tableExists reports whether an unqualified reference to table resolves,
// that is, for PostgreSQL, whether it is on the role's search_path.
func tableExists(ctx context.Context, d *db, table string) (bool, error) {
	var q string
	switch d.kind {
	case kindPostgres:
		q = "SELECT to_regclass($1) IS NOT NULL"
	default:
		q = "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = $1"
	}
	var exists bool
	err := d.QueryRowContext(ctx, q, table).Scan(&exists)
	return exists, err
}
