package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// CopyOptions say what CopyDatabase copies.
type CopyOptions struct {
	// Schemas maps each source schema to copy to its name in dst; nil
	// copies every user schema (not pg_*, information_schema) to itself.
	Schemas map[string]string
	// Data says whether to copy the rows of a table; nil copies none
	// (schema only).
	Data func(schema, table string) bool
	// Owner, if set, owns every object made in dst.
	Owner string
}

// CopyStats are what CopyDatabase copied.
type CopyStats struct {
	// Tables is the number of tables made (partitioned parents included).
	Tables int64
	// Rows is the number of rows copied.
	Rows int64
	// Bytes is the size of the rows copied in COPY's text format.
	Bytes int64
}

// BookkeepingTable reports whether schema.table is the bookkeeping table
// of a well-known migration tool (goose, golang-migrate, Rails, Drizzle,
// Flyway, Prisma, Alembic, Knex, Django), whose rows a schema-only copy
// still needs so that the tool knows which migrations have run.
func BookkeepingTable(schema, table string) bool {
	switch table {
	case "goose_db_version", "schema_migrations", "__drizzle_migrations", "flyway_schema_history",
		"_prisma_migrations", "alembic_version", "knex_migrations", "knex_migrations_lock",
		"ar_internal_metadata", "django_migrations":
		return true
	}
	return false
}

// CopyDatabase recreates src's schemas (their tables, columns with
// defaults, identity and generated columns, sequences with their current
// values, enum, domain and composite types, functions and procedures,
// constraints, indexes, views and materialized views, triggers) in dst,
// and the rows of the tables o.Data names, by reading src's catalog: no
// pg_dump binary is needed. Extensions are made with CREATE EXTENSION IF
// NOT EXISTS (the server must have them). Rows stream with the COPY
// protocol, each table from src straight into dst.
//
// src is read in one REPEATABLE READ READ ONLY transaction, so it is never
// written and what is copied is one snapshot. dst is written in one
// transaction: on error it is left as it was.
//
// Schema names are rewritten per o.Schemas in the definitions the server
// gives (pg_get_viewdef and the others, read with an empty search_path so
// every name is qualified), by replacing the source schema's
// quote_ident form followed by a dot; a string literal that happens to
// hold such text is rewritten too.
//
// Not copied: row-level security policies and the RLS flag, publications
// and subscriptions, large objects, grants and default privileges,
// comments, statistics objects, rules other than views', event triggers,
// aggregates, operators, casts, collations and range types defined in the
// schemas, table inheritance other than declarative partitioning, storage
// parameters of tables, and the objects of extensions (the extension
// makes them). References to schemas that are not copied fail.
func CopyDatabase(ctx context.Context, src, dst *pgx.Conn, o CopyOptions) (CopyStats, error) {
	var st CopyStats
	stx, err := src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return st, fmt.Errorf("postgres: copy: reading the source: %w", err)
	}
	defer rollbackQuiet(ctx, stx)
	if _, err := stx.Exec(ctx, "SET LOCAL search_path = ''"); err != nil {
		return st, fmt.Errorf("postgres: copy: %w", err)
	}
	cat, err := readCatalog(ctx, stx, o.Schemas)
	if err != nil {
		return st, fmt.Errorf("postgres: copy: reading the catalog: %w", err)
	}
	dtx, err := dst.Begin(ctx)
	if err != nil {
		return st, fmt.Errorf("postgres: copy: %w", err)
	}
	defer rollbackQuiet(ctx, dtx)
	c := &copier{ctx: ctx, src: stx, dst: dtx, cat: cat, o: o}
	if err := c.run(&st); err != nil {
		return st, err
	}
	if err := dtx.Commit(ctx); err != nil {
		return st, fmt.Errorf("postgres: copy: committing: %w", err)
	}
	return st, nil
}

func rollbackQuiet(ctx context.Context, tx pgx.Tx) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	_ = tx.Rollback(cctx)
}

// catalog is what CopyDatabase read of the source.
type catalog struct {
	schemas    []nsInfo // to copy, in name order
	rename     map[string]string
	quoted     map[string]string // source schema -> quote_ident(schema)
	extensions []struct{ Name, Schema string }
	types      []typeInfo
	seqs       []seqInfo
	funcs      []defInfo
	tables     []tableInfo
	cons       []conInfo
	indexes    []defInfo
	views      []viewInfo
	triggers   []defInfo
}

type nsInfo struct{ Name, Quoted string }

type typeInfo struct {
	Schema, Name string
	Kind         string // e enum, d domain, c composite
	Def          string // enum labels, domain base type, composite columns
	Default      *string
	NotNull      bool
	Checks       []string
}

type seqInfo struct {
	Schema, Name, Type          string
	Start, Inc, Min, Max, Cache int64
	Cycle                       bool
	// The column owning it, and how: "a" serial, "i" identity, "" none.
	OwnerSchema, OwnerTable, OwnerCol, DepTyp string
}

// defInfo is an object the server defines: its schema, its table (for a
// routine: its signature, regprocedure's output), name and definition.
type defInfo struct{ Schema, Table, Name, Def string }

type columnInfo struct {
	Name, Type, Collation string
	NotNull               bool
	Identity, Generated   string
	Default               *string
}

type tableInfo struct {
	OID                int64
	Schema, Name, Kind string // r or p
	Unlogged           bool
	PartKey            string // PARTITION BY ... for p
	Parent             string // qualified parent (server quoting) for a partition
	Bound              string // FOR VALUES ...
	Cols               []columnInfo
}

type conInfo struct {
	Schema, Table, Name, Type, Def string
}

type viewInfo struct {
	Schema, Name, Def, Options string
	Mat                        bool
}

const sqlSchemas = `SELECT n.nspname, quote_ident(n.nspname) FROM pg_namespace n
WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
ORDER BY 1`

// notExt is a condition that the object oid of catalog cls is not an
// extension's.
func notExt(cls, oid string) string {
	return fmt.Sprintf("NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '%s'::regclass AND e.objid = %s AND e.deptype = 'e')", cls, oid)
}

func readCatalog(ctx context.Context, tx pgx.Tx, want map[string]string) (*catalog, error) {
	cat := &catalog{rename: map[string]string{}, quoted: map[string]string{}}
	rows, err := tx.Query(ctx, sqlSchemas)
	if err != nil {
		return nil, err
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[nsInfo])
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for _, n := range all {
		found[n.Name] = true
		to := n.Name
		if want != nil {
			t, ok := want[n.Name]
			if !ok {
				continue
			}
			to = t
		}
		cat.schemas = append(cat.schemas, n)
		cat.rename[n.Name] = to
		cat.quoted[n.Name] = n.Quoted
	}
	for s := range want {
		if !found[s] {
			return nil, fmt.Errorf("schema %q does not exist in the source", s)
		}
	}
	names := make([]string, 0, len(cat.rename))
	for s := range cat.rename {
		names = append(names, s)
	}
	sort.Strings(names)

	q := func(sql string, scan func(pgx.CollectableRow) error) error {
		rows, err := tx.Query(ctx, sql, names)
		if err != nil {
			return err
		}
		_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) { return struct{}{}, scan(r) })
		return err
	}

	if err := q(`SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
		WHERE e.extname <> 'plpgsql' AND $1::text[] IS NOT NULL ORDER BY e.oid`, func(r pgx.CollectableRow) error {
		var e struct{ Name, Schema string }
		if err := r.Scan(&e.Name, &e.Schema); err != nil {
			return err
		}
		cat.extensions = append(cat.extensions, e)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("extensions: %w", err)
	}

	if err := q(`SELECT n.nspname, t.typname, t.typtype::text,
		CASE t.typtype
		  WHEN 'e' THEN (SELECT string_agg(quote_literal(l.enumlabel), ', ' ORDER BY l.enumsortorder) FROM pg_enum l WHERE l.enumtypid = t.oid)
		  WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod) ||
		       COALESCE(' COLLATE ' || (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
		                                 WHERE co.oid = t.typcollation AND t.typcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype)), '')
		  ELSE (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		        FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
		END,
		CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) END,
		t.typnotnull,
		ARRAY(SELECT 'CONSTRAINT ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c' ORDER BY c.conname)
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = ANY($1)
		  AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = t.typrelid AND r.relkind = 'c')))
		  AND `+notExt("pg_type", "t.oid")+` ORDER BY t.oid`, func(r pgx.CollectableRow) error {
		var t typeInfo
		if err := r.Scan(&t.Schema, &t.Name, &t.Kind, &t.Def, &t.Default, &t.NotNull, &t.Checks); err != nil {
			return err
		}
		cat.types = append(cat.types, t)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("types: %w", err)
	}

	if err := q(`SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
		COALESCE(tn.nspname, ''), COALESCE(t.relname, ''), COALESCE(a.attname, ''), COALESCE(d.deptype::text, '')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
		LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
		LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
		LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		WHERE c.relkind = 'S' AND n.nspname = ANY($1) AND `+notExt("pg_class", "c.oid")+` ORDER BY c.oid`, func(r pgx.CollectableRow) error {
		var s seqInfo
		if err := r.Scan(&s.Schema, &s.Name, &s.Type, &s.Start, &s.Inc, &s.Min, &s.Max, &s.Cache, &s.Cycle, &s.OwnerSchema, &s.OwnerTable, &s.OwnerCol, &s.DepTyp); err != nil {
			return err
		}
		cat.seqs = append(cat.seqs, s)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("sequences: %w", err)
	}

	if err := q(`SELECT n.nspname, p.oid::regprocedure::text, p.proname, pg_get_functiondef(p.oid)
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p') AND `+notExt("pg_proc", "p.oid")+` ORDER BY p.oid`, func(r pgx.CollectableRow) error {
		var d defInfo
		if err := r.Scan(&d.Schema, &d.Table, &d.Name, &d.Def); err != nil {
			return err
		}
		cat.funcs = append(cat.funcs, d)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("functions: %w", err)
	}

	byOID := map[int64]int{}
	if err := q(`SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relpersistence = 'u',
		CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) ELSE '' END,
		COALESCE((SELECT quote_ident(pn.nspname) || '.' || quote_ident(pc.relname) FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
		          JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition), ''),
		CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) ELSE '' END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) AND `+notExt("pg_class", "c.oid")+`
		ORDER BY c.relispartition, c.oid`, func(r pgx.CollectableRow) error {
		var t tableInfo
		if err := r.Scan(&t.OID, &t.Schema, &t.Name, &t.Kind, &t.Unlogged, &t.PartKey, &t.Parent, &t.Bound); err != nil {
			return err
		}
		byOID[t.OID] = len(cat.tables)
		cat.tables = append(cat.tables, t)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	if err := q(`SELECT a.attrelid::int8, a.attname, format_type(a.atttypid, a.atttypmod),
		COALESCE((SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
		          WHERE co.oid = a.attcollation AND a.attcollation <> t.typcollation), ''),
		a.attnotnull, a.attidentity::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid)
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attrelid, a.attnum`, func(r pgx.CollectableRow) error {
		var oid int64
		var col columnInfo
		if err := r.Scan(&oid, &col.Name, &col.Type, &col.Collation, &col.NotNull, &col.Identity, &col.Generated, &col.Default); err != nil {
			return err
		}
		if i, ok := byOID[oid]; ok {
			cat.tables[i].Cols = append(cat.tables[i].Cols, col)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("columns: %w", err)
	}

	// Constraints of tables (not NOT NULL, which are columns in 15, nor
	// those a partition inherits), PK/unique/check/exclusion before FKs.
	if err := q(`SELECT n.nspname, c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid)
		FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND k.contype IN ('p', 'u', 'c', 'x', 'f')
		  AND k.conislocal AND k.conparentid = 0
		ORDER BY k.contype = 'f', k.oid`, func(r pgx.CollectableRow) error {
		var k conInfo
		if err := r.Scan(&k.Schema, &k.Table, &k.Name, &k.Type, &k.Def); err != nil {
			return err
		}
		cat.cons = append(cat.cons, k)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("constraints: %w", err)
	}

	if err := q(`SELECT n.nspname, c.relname, ic.relname, pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'm')
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
		  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
		  AND `+notExt("pg_class", "c.oid")+`
		ORDER BY i.indexrelid`, func(r pgx.CollectableRow) error {
		var d defInfo
		if err := r.Scan(&d.Schema, &d.Table, &d.Name, &d.Def); err != nil {
			return err
		}
		cat.indexes = append(cat.indexes, d)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("indexes: %w", err)
	}

	if err := q(`SELECT n.nspname, c.relname, pg_get_viewdef(c.oid), COALESCE(array_to_string(c.reloptions, ', '), ''), c.relkind = 'm'
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = ANY($1) AND c.relkind IN ('v', 'm') AND `+notExt("pg_class", "c.oid")+` ORDER BY c.oid`, func(r pgx.CollectableRow) error {
		var v viewInfo
		if err := r.Scan(&v.Schema, &v.Name, &v.Def, &v.Options, &v.Mat); err != nil {
			return err
		}
		cat.views = append(cat.views, v)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("views: %w", err)
	}

	if err := q(`SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid)
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = ANY($1) AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY t.oid`, func(r pgx.CollectableRow) error {
		var d defInfo
		if err := r.Scan(&d.Schema, &d.Table, &d.Name, &d.Def); err != nil {
			return err
		}
		cat.triggers = append(cat.triggers, d)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("triggers: %w", err)
	}
	return cat, nil
}

// copier writes a catalog into dst.
type copier struct {
	ctx context.Context
	src pgx.Tx
	dst pgx.Tx
	cat *catalog
	o   CopyOptions
	own []string // ALTER ... OWNER TO statements, run at the end
}

// to returns the destination name of source schema s.
func (c *copier) to(s string) string { return c.cat.rename[s] }

func (c *copier) name(schema, name string) string { return ident(c.to(schema), name) }

// rewrite replaces, in a definition the server gave, each renamed source
// schema's qualified references with the destination schema.
func (c *copier) rewrite(def string) string {
	for _, n := range c.cat.schemas {
		to := c.to(n.Name)
		if to == n.Name {
			continue
		}
		def = replaceQualifier(def, n.Quoted, ident(to))
	}
	return def
}

// replaceQualifier replaces from+"." by to+"." where from starts a name
// (not preceded by an identifier character or a quote).
func replaceQualifier(s, from, to string) string {
	pat := from + "."
	var b strings.Builder
	for {
		i := strings.Index(s, pat)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		if i > 0 && isIdentByte(s[i-1]) {
			b.WriteString(s[:i+len(pat)])
			s = s[i+len(pat):]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(to + ".")
		s = s[i+len(pat):]
	}
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c == '"' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func (c *copier) exec(what, sql string) error {
	if _, err := c.dst.Exec(c.ctx, sql); err != nil {
		return fmt.Errorf("postgres: copy: %s: %w", what, err)
	}
	return nil
}

// try runs sql in a savepoint and reports its error without aborting the
// transaction.
func (c *copier) try(sql string) error {
	sp, err := c.dst.Begin(c.ctx)
	if err != nil {
		return err
	}
	if _, err := sp.Exec(c.ctx, sql); err != nil {
		rollbackQuiet(c.ctx, sp)
		return err
	}
	return sp.Commit(c.ctx)
}

func (c *copier) owner(kind, target string) {
	if c.o.Owner != "" {
		c.own = append(c.own, fmt.Sprintf("ALTER %s %s OWNER TO %s", kind, target, ident(c.o.Owner)))
	}
}

func (c *copier) run(st *CopyStats) error {
	cat := c.cat
	// Function bodies may name tables made later.
	if err := c.exec("setting up", "SET LOCAL check_function_bodies = off"); err != nil {
		return err
	}
	for _, n := range cat.schemas {
		if err := c.exec("schema "+n.Name, "CREATE SCHEMA IF NOT EXISTS "+ident(c.to(n.Name))); err != nil {
			return err
		}
		c.owner("SCHEMA", ident(c.to(n.Name)))
	}
	for _, e := range cat.extensions {
		s, ok := cat.rename[e.Schema]
		if !ok {
			s = e.Schema
			if err := c.exec("schema "+s, "CREATE SCHEMA IF NOT EXISTS "+ident(s)); err != nil {
				return err
			}
		}
		if err := c.exec("extension "+e.Name, "CREATE EXTENSION IF NOT EXISTS "+ident(e.Name)+" SCHEMA "+ident(s)); err != nil {
			return err
		}
	}
	for _, t := range cat.types {
		name := c.name(t.Schema, t.Name)
		var sql string
		switch t.Kind {
		case "e":
			sql = "CREATE TYPE " + name + " AS ENUM (" + t.Def + ")"
		case "c":
			sql = "CREATE TYPE " + name + " AS (" + c.rewrite(t.Def) + ")"
		default:
			sql = "CREATE DOMAIN " + name + " AS " + c.rewrite(t.Def)
			if t.Default != nil {
				sql += " DEFAULT " + c.rewrite(*t.Default)
			}
			if t.NotNull {
				sql += " NOT NULL"
			}
			for _, k := range t.Checks {
				sql += " " + c.rewrite(k)
			}
		}
		if err := c.exec("type "+t.Schema+"."+t.Name, sql); err != nil {
			return err
		}
		if t.Kind == "d" {
			c.owner("DOMAIN", name)
		} else {
			c.owner("TYPE", name)
		}
	}
	for _, s := range cat.seqs {
		if s.DepTyp == "i" {
			continue // made by its identity column
		}
		name := c.name(s.Schema, s.Name)
		cycle := "NO CYCLE"
		if s.Cycle {
			cycle = "CYCLE"
		}
		sql := fmt.Sprintf("CREATE SEQUENCE %s AS %s INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d CACHE %d %s",
			name, s.Type, s.Inc, s.Min, s.Max, s.Start, s.Cache, cycle)
		if err := c.exec("sequence "+s.Schema+"."+s.Name, sql); err != nil {
			return err
		}
		if s.DepTyp == "" {
			c.owner("SEQUENCE", name)
		}
	}
	// Functions whose signature needs a table's row type wait for the
	// tables.
	var later []defInfo
	for _, f := range cat.funcs {
		if err := c.try(c.rewrite(f.Def)); err != nil {
			later = append(later, f)
		}
	}
	for _, t := range cat.tables {
		if err := c.exec("table "+t.Schema+"."+t.Name, c.tableSQL(t)); err != nil {
			return err
		}
		st.Tables++
		c.owner("TABLE", c.name(t.Schema, t.Name))
	}
	for _, f := range later {
		if err := c.exec("function "+f.Schema+"."+f.Name, c.rewrite(f.Def)); err != nil {
			return err
		}
	}
	for _, s := range cat.seqs {
		if s.DepTyp == "a" && s.OwnerTable != "" {
			ts, tn := s.OwnerSchema, s.OwnerTable
			if _, ok := cat.rename[ts]; !ok {
				continue
			}
			if err := c.exec("sequence "+s.Name, "ALTER SEQUENCE "+c.name(s.Schema, s.Name)+" OWNED BY "+c.name(ts, tn)+"."+ident(s.OwnerCol)); err != nil {
				return err
			}
		}
	}
	if c.o.Data != nil {
		for _, t := range cat.tables {
			if t.Kind != "r" || !c.o.Data(t.Schema, t.Name) {
				continue
			}
			if err := c.copyRows(t, st); err != nil {
				return err
			}
		}
	}
	if err := c.sequenceValues(); err != nil {
		return err
	}
	for _, k := range cat.cons {
		sql := "ALTER TABLE " + c.name(k.Schema, k.Table) + " ADD CONSTRAINT " + ident(k.Name) + " " + c.rewrite(k.Def)
		if err := c.exec("constraint "+k.Name+" on "+k.Schema+"."+k.Table, sql); err != nil {
			return err
		}
	}
	// Views in dependency order: retry those that name a view not yet
	// made until a round makes none.
	pending := cat.views
	for len(pending) > 0 {
		var next []viewInfo
		var last error
		for _, v := range pending {
			if err := c.try(c.viewSQL(v)); err != nil {
				next, last = append(next, v), err
			}
		}
		if len(next) == len(pending) {
			return fmt.Errorf("postgres: copy: view %s.%s: %w", next[0].Schema, next[0].Name, last)
		}
		pending = next
	}
	for _, v := range cat.views {
		kind := "VIEW"
		if v.Mat {
			kind = "MATERIALIZED VIEW"
		}
		c.owner(kind, c.name(v.Schema, v.Name))
	}
	for _, i := range cat.indexes {
		// A partitioned table's index reads "ON ONLY": without ONLY it
		// is made on the partitions too, as in the source.
		def := strings.Replace(c.rewrite(i.Def), " ON ONLY ", " ON ", 1)
		if err := c.exec("index "+i.Schema+"."+i.Name, def); err != nil {
			return err
		}
	}
	for _, t := range cat.triggers {
		if err := c.exec("trigger "+t.Name+" on "+t.Schema+"."+t.Table, c.rewrite(t.Def)); err != nil {
			return err
		}
	}
	for _, f := range cat.funcs {
		c.owner("ROUTINE", c.rewrite(f.Table))
	}
	for _, sql := range c.own {
		if sql == "" {
			continue
		}
		if err := c.exec("owner", sql); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) tableSQL(t tableInfo) string {
	var b strings.Builder
	b.WriteString("CREATE ")
	if t.Unlogged {
		b.WriteString("UNLOGGED ")
	}
	b.WriteString("TABLE " + c.name(t.Schema, t.Name))
	if t.Parent != "" {
		b.WriteString(" PARTITION OF " + c.rewrite(t.Parent) + " " + c.rewrite(t.Bound))
	} else {
		b.WriteString(" (")
		for i, col := range t.Cols {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(ident(col.Name) + " " + c.rewrite(col.Type))
			if col.Collation != "" {
				b.WriteString(" COLLATE " + col.Collation)
			}
			switch {
			case col.Generated == "s" && col.Default != nil:
				b.WriteString(" GENERATED ALWAYS AS (" + c.rewrite(*col.Default) + ") STORED")
			case col.Identity == "a":
				b.WriteString(" GENERATED ALWAYS AS IDENTITY" + c.identityOptions(t, col))
			case col.Identity == "d":
				b.WriteString(" GENERATED BY DEFAULT AS IDENTITY" + c.identityOptions(t, col))
			case col.Default != nil:
				b.WriteString(" DEFAULT " + c.rewrite(*col.Default))
			}
			if col.NotNull && col.Identity == "" {
				b.WriteString(" NOT NULL")
			}
		}
		b.WriteString(")")
	}
	if t.PartKey != "" {
		b.WriteString(" PARTITION BY " + c.rewrite(t.PartKey))
	}
	return b.String()
}

// identityOptions returns the sequence options of col's identity.
func (c *copier) identityOptions(t tableInfo, col columnInfo) string {
	for _, s := range c.cat.seqs {
		if s.DepTyp == "i" && s.OwnerSchema == t.Schema && s.OwnerTable == t.Name && s.OwnerCol == col.Name {
			cycle := ""
			if s.Cycle {
				cycle = " CYCLE"
			}
			return fmt.Sprintf(" (INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d CACHE %d%s)", s.Inc, s.Min, s.Max, s.Start, s.Cache, cycle)
		}
	}
	return ""
}

func (c *copier) viewSQL(v viewInfo) string {
	def := strings.TrimSuffix(strings.TrimSpace(c.rewrite(v.Def)), ";")
	if v.Mat {
		with := " WITH NO DATA"
		if c.o.Data != nil && c.o.Data(v.Schema, v.Name) {
			with = " WITH DATA"
		}
		return "CREATE MATERIALIZED VIEW " + c.name(v.Schema, v.Name) + " AS " + def + with
	}
	opts := ""
	if v.Options != "" {
		opts = " WITH (" + v.Options + ")"
	}
	return "CREATE VIEW " + c.name(v.Schema, v.Name) + opts + " AS " + def
}

// copyRows streams t's rows from src to dst with COPY: the source's COPY
// TO writes into a pipe the destination's COPY FROM reads.
func (c *copier) copyRows(t tableInfo, st *CopyStats) error {
	var cols []string
	for _, col := range t.Cols {
		if col.Generated == "" {
			cols = append(cols, ident(col.Name))
		}
	}
	list := "(" + strings.Join(cols, ", ") + ")"
	from := "COPY " + ident(t.Schema, t.Name) + " " + list + " TO STDOUT"
	to := "COPY " + c.name(t.Schema, t.Name) + " " + list + " FROM STDIN"
	pr, pw := io.Pipe()
	cw := &countWriter{w: pw}
	done := make(chan error, 1)
	go func() {
		_, err := c.src.Conn().PgConn().CopyTo(c.ctx, cw, from)
		pw.CloseWithError(err)
		done <- err
	}()
	tag, err := c.dst.Conn().PgConn().CopyFrom(c.ctx, pr, to)
	pr.CloseWithError(errors.New("copy into the destination ended"))
	rerr := <-done
	if rerr != nil {
		return fmt.Errorf("postgres: copy: reading rows of %s.%s: %w", t.Schema, t.Name, rerr)
	}
	if err != nil {
		return fmt.Errorf("postgres: copy: writing rows of %s.%s: %w", t.Schema, t.Name, err)
	}
	st.Rows += tag.RowsAffected()
	st.Bytes += cw.n
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

// sequenceValues gives every sequence in dst its source's value.
func (c *copier) sequenceValues() error {
	for _, s := range c.cat.seqs {
		var last int64
		var called bool
		if err := c.src.QueryRow(c.ctx, "SELECT last_value, is_called FROM "+ident(s.Schema, s.Name)).Scan(&last, &called); err != nil {
			return fmt.Errorf("postgres: copy: reading sequence %s.%s: %w", s.Schema, s.Name, err)
		}
		target := c.name(s.Schema, s.Name)
		if s.DepTyp == "i" {
			ts, tn := s.OwnerSchema, s.OwnerTable
			var seq *string
			if err := c.dst.QueryRow(c.ctx, "SELECT pg_get_serial_sequence($1, $2)", c.name(ts, tn), s.OwnerCol).Scan(&seq); err != nil {
				return fmt.Errorf("postgres: copy: finding the identity sequence of %s.%s.%s: %w", s.OwnerSchema, s.OwnerTable, s.OwnerCol, err)
			}
			if seq == nil {
				return fmt.Errorf("postgres: copy: %s.%s.%s has no identity sequence", s.OwnerSchema, s.OwnerTable, s.OwnerCol)
			}
			target = *seq
		}
		if _, err := c.dst.Exec(c.ctx, "SELECT setval($1::regclass, $2, $3)", target, last, called); err != nil {
			return fmt.Errorf("postgres: copy: setting sequence %s.%s: %w", s.Schema, s.Name, err)
		}
	}
	return nil
}
