package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/previewd/previewd/internal/database"
)

// Suffixes of the databases a template refresh makes next to the template:
// the copy being built, and the old template between the swap and its
// drop. They are never production's (checkRefreshable).
const (
	refreshNext = "$new"
	refreshOld  = "$old"
)

// refreshMarker is the comment on the databases a refresh makes, so that
// a later refresh drops what a crashed one left and nothing else.
const refreshMarker = "previewd:template-refresh"

// RefreshReport is what RefreshTemplate did.
type RefreshReport struct {
	// Template is the database refreshed; Source is production's
	// database it was copied from.
	Template, Source string
	// Tables, Rows and Bytes are what was copied (CopyStats).
	Tables, Rows, Bytes int64
	// Masked are the masked columns, in name order.
	Masked []MaskedColumn
	// Warnings are what went wrong after the new template was in place
	// (the old one could not be dropped: the next refresh drops it).
	Warnings []string
	// Took is the whole refresh's wall time.
	Took time.Duration
}

// MaskedColumn is one column the masking rewrote.
type MaskedColumn struct {
	// Column is schema.table.column.
	Column string
	// Values is how many non-null values it replaced.
	Values int64
}

// MaskFailure is a masking expression that did not mask its column.
type MaskFailure struct {
	// Column is the masking map's key; Expr its expression.
	Column, Expr string
	// Err is the expression's error, or nil when it ran but left
	// Unchanged of the column's NonNull values as they were.
	Err                error
	Unchanged, NonNull int64
}

func (f MaskFailure) String() string {
	if f.Err != nil {
		return fmt.Sprintf("%s: %v", f.Column, f.Err)
	}
	if f.Unchanged == f.NonNull {
		return fmt.Sprintf("%s: every value unchanged (%d of %d non-null) by %q", f.Column, f.Unchanged, f.NonNull, f.Expr)
	}
	return fmt.Sprintf("%s: %d of %d non-null values unchanged by %q", f.Column, f.Unchanged, f.NonNull, f.Expr)
}

// MaskError says that masking failed, so the refresh stopped and the old
// template stayed.
type MaskError struct {
	Template string
	Failures []MaskFailure
}

func (e *MaskError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = f.String()
	}
	return fmt.Sprintf("postgres: masking failed, template %q kept as it was: %s", e.Template, strings.Join(parts, "; "))
}

// maskColumn is a parsed masking map entry.
type maskColumn struct {
	key, schema, table, column, expr string
}

func (m maskColumn) qualified() string { return m.schema + "." + m.table + "." + m.column }

// parseMasking parses a masking map ("table.column" in schema public, or
// "schema.table.column") into entries in key order.
func parseMasking(masking map[string]string) ([]maskColumn, error) {
	out := make([]maskColumn, 0, len(masking))
	for k, expr := range masking {
		parts := strings.Split(k, ".")
		if len(parts) == 2 {
			parts = append([]string{"public"}, parts...)
		}
		if len(parts) != 3 || slicesContainsEmpty(parts) {
			return nil, fmt.Errorf("postgres: masking %q: want table.column or schema.table.column", k)
		}
		if strings.TrimSpace(expr) == "" {
			return nil, fmt.Errorf("postgres: masking %q: empty expression", k)
		}
		out = append(out, maskColumn{key: k, schema: parts[0], table: parts[1], column: parts[2], expr: expr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out, nil
}

func slicesContainsEmpty(s []string) bool {
	for _, x := range s {
		if x == "" {
			return true
		}
	}
	return false
}

// checkRefreshable returns an error wrapping database.ErrProduction if a
// template refresh must not write, rename or drop the database name:
// production's, the admin database, or the server's own.
func (p *Provider) checkRefreshable(name string) error {
	switch {
	case name == "":
		return errors.New("postgres: no template: set database.postgres.template")
	case name == p.prodDB, name == p.adminDB, name == "template0", name == "template1", name == "postgres":
		return fmt.Errorf("postgres: refusing to refresh into %q: %w", name, database.ErrProduction)
	case len(name) > MaxNameLen:
		return fmt.Errorf("postgres: template name %q: %d bytes with its refresh suffix; at most %d", name, len(name), MaxNameLen)
	}
	return nil
}

// RefreshTemplate refreshes the template from production with the
// masking of Options.Masking; see RefreshTemplateWith.
func (p *Provider) RefreshTemplate(ctx context.Context) (RefreshReport, error) {
	return p.RefreshTemplateWith(ctx, p.masking)
}

// RefreshTemplateWith replaces the template (Options.Template) with a
// fresh, masked copy of production: ProductionURL's database, or else the
// admin database.
//
//  1. Production's schemas and rows are copied with CopyDatabase into a
//     new database, the template's name + "$new" (a leftover of a crashed
//     refresh is dropped first). Production is read in one READ ONLY
//     transaction: it is never written, renamed or dropped.
//  2. In one transaction, each masking expression replaces its column's
//     values (UPDATE … SET col = expr, with the table's user triggers
//     disabled) and is verified in the same statement: every non-null
//     original value must have changed. An expression that errors, a
//     column that does not exist, and a value left unchanged stop the
//     refresh (*MaskError names each column). Materialized views are then
//     refreshed, and the masked tables rewritten (VACUUM FULL, ANALYZE) so
//     no dead row or statistic keeps an original value.
//  3. Only then is the copy swapped in: in one transaction the template is
//     renamed to "$old" and the copy to the template's name (keeping its
//     owner and template flag); the old one is then dropped. Renaming
//     needs the template to have no sessions (SQLSTATE 55006 otherwise):
//     previews cloning it hold one for the length of their CREATE
//     DATABASE; RefreshTemplate retries for Options.TemplateWait and then
//     fails with a *TemplateBusyError that names the sessions.
//
// Any failure before the swap drops the copy and leaves the old template
// as it was. Refreshes of one template are serialized by an advisory lock.
// Database-level grants and settings of the old template are not carried
// over.
func (p *Provider) RefreshTemplateWith(ctx context.Context, masking map[string]string) (RefreshReport, error) {
	start := time.Now()
	rep := RefreshReport{Template: p.reference, Source: p.prodDB}
	cols, err := parseMasking(masking)
	if err != nil {
		return rep, err
	}
	next, old := p.reference+refreshNext, p.reference+refreshOld
	for _, n := range []string{p.reference, next, old} {
		if err := p.checkRefreshable(n); err != nil {
			return rep, err
		}
	}
	err = p.withSessionLock(ctx, "template-refresh:"+p.reference, func(conn *pgxpool.Conn) error {
		if err := p.dropRefreshLeftover(ctx, conn, next); err != nil {
			return err
		}
		if err := p.dropRefreshLeftover(ctx, conn, old); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident(next)+" TEMPLATE template0"); err != nil {
			return fmt.Errorf("postgres: creating %s: %w", next, err)
		}
		swapped := false
		defer func() {
			if !swapped {
				dctx, cancel := cleanupContext(ctx)
				defer cancel()
				if err := p.dropRefreshed(dctx, conn, next); err != nil {
					p.log.Warn("dropping the unfinished template copy failed; the next refresh drops it", "database", next, "err", err)
				}
			}
		}()
		if _, err := conn.Exec(ctx, "COMMENT ON DATABASE "+ident(next)+" IS '"+refreshMarker+"'"); err != nil {
			return fmt.Errorf("postgres: marking %s: %w", next, err)
		}
		if err := p.buildTemplate(ctx, next, cols, &rep); err != nil {
			return err
		}
		if err := p.swapTemplate(ctx, conn, next, old); err != nil {
			return err
		}
		swapped = true
		if err := p.dropRefreshed(ctx, conn, old); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the old template, now %q, could not be dropped (the next refresh drops it): %v", old, err))
		}
		return nil
	})
	rep.Took = time.Since(start)
	return rep, err
}

// dropRefreshLeftover drops name if a crashed refresh left it (it carries
// refreshMarker), and refuses to go on if something else has that name.
func (p *Provider) dropRefreshLeftover(ctx context.Context, conn *pgxpool.Conn, name string) error {
	var comment string
	err := conn.QueryRow(ctx, "SELECT COALESCE(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1", name).Scan(&comment)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("postgres: inspecting %s: %w", name, err)
	case comment != refreshMarker:
		return fmt.Errorf("postgres: database %q %w (comment %q); a template refresh needs its name", name, ErrForeign, comment)
	}
	p.log.Info("dropping what an earlier template refresh left", "database", name)
	return p.dropRefreshed(ctx, conn, name)
}

// dropRefreshed drops a database a refresh made, after the production
// guard.
func (p *Provider) dropRefreshed(ctx context.Context, conn *pgxpool.Conn, name string) error {
	if err := p.checkRefreshable(name); err != nil {
		return err
	}
	if name == p.reference {
		return fmt.Errorf("postgres: refusing to drop the template %q", name)
	}
	// A template flag would make DROP fail.
	var isTemplate bool
	err := conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&isTemplate)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("postgres: inspecting %s: %w", name, err)
	}
	if isTemplate {
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident(name)+" IS_TEMPLATE false"); err != nil {
			return fmt.Errorf("postgres: dropping %s: %w", name, err)
		}
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("postgres: dropping %s: %w", name, err)
	}
	return nil
}

// sourceConfig returns how to connect to production's database.
func (p *Provider) sourceConfig() (*pgx.ConnConfig, error) {
	if p.prodURL == "" {
		cfg := p.adminCfg.Copy()
		cfg.Database = p.adminDB
		return cfg, nil
	}
	cfg, err := pgx.ParseConfig(p.prodURL)
	if err != nil {
		return nil, fmt.Errorf("postgres: ProductionURL: %w", err)
	}
	// Unnamed statements, so that the copy also works through a
	// transaction pooler.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	return cfg, nil
}

// buildTemplate fills next with production's copy and masks it.
func (p *Provider) buildTemplate(ctx context.Context, next string, cols []maskColumn, rep *RefreshReport) error {
	scfg, err := p.sourceConfig()
	if err != nil {
		return err
	}
	src, err := pgx.ConnectConfig(ctx, scfg)
	if err != nil {
		return fmt.Errorf("postgres: connecting to production's database %s: %w", p.prodDB, err)
	}
	defer p.closeConn(ctx, src)
	dcfg := p.adminCfg.Copy()
	dcfg.Database = next
	dst, err := pgx.ConnectConfig(ctx, dcfg)
	if err != nil {
		return fmt.Errorf("postgres: connecting to %s: %w", next, err)
	}
	defer p.closeConn(ctx, dst)
	st, err := CopyDatabase(ctx, src, dst, CopyOptions{Data: func(string, string) bool { return true }})
	if err != nil {
		return err
	}
	rep.Tables, rep.Rows, rep.Bytes = st.Tables, st.Rows, st.Bytes
	masked, err := applyMasking(ctx, dst, cols)
	if err != nil {
		var me *MaskError
		if errors.As(err, &me) {
			me.Template = p.reference
		}
		return err
	}
	rep.Masked = masked
	seen := map[string]bool{}
	for _, c := range cols {
		t := ident(c.schema, c.table)
		if seen[t] {
			continue
		}
		seen[t] = true
		if _, err := dst.Exec(ctx, "VACUUM (FULL, ANALYZE) "+t); err != nil {
			return fmt.Errorf("postgres: rewriting masked table %s: %w", t, err)
		}
	}
	return nil
}

const sqlMaskColumn = `SELECT c.relkind::text, a.attgenerated::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')`

// applyMasking runs every masking expression in one transaction on conn,
// verifying each in its own statement, and commits only if all mask their
// column.
func applyMasking(ctx context.Context, conn *pgx.Conn, cols []maskColumn) ([]MaskedColumn, error) {
	if len(cols) == 0 {
		return nil, nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: masking: %w", err)
	}
	defer rollbackQuiet(ctx, tx)
	var masked []MaskedColumn
	var fails []MaskFailure
	disabled := map[string]bool{}
	for _, c := range cols {
		f := MaskFailure{Column: c.key, Expr: c.expr}
		var kind, generated string
		err := tx.QueryRow(ctx, sqlMaskColumn, c.schema, c.table, c.column).Scan(&kind, &generated)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			f.Err = fmt.Errorf("no column %s in the copy of production", c.qualified())
		case err != nil:
			return nil, fmt.Errorf("postgres: masking %s: %w", c.key, err)
		case generated != "":
			f.Err = errors.New("a generated column: mask the columns it is computed from")
		}
		if f.Err != nil {
			fails = append(fails, f)
			continue
		}
		t := ident(c.schema, c.table)
		if !disabled[t] {
			// User triggers would see, and might copy, the original
			// values; constraint triggers (foreign keys) stay.
			if _, err := tx.Exec(ctx, "ALTER TABLE "+t+" DISABLE TRIGGER USER"); err != nil {
				return nil, fmt.Errorf("postgres: masking %s: %w", c.key, err)
			}
			disabled[t] = true
		}
		col := ident(c.column)
		sql := fmt.Sprintf(`WITH u AS (
  UPDATE %[1]s AS previewd_new SET %[2]s = (%[3]s)
  FROM (SELECT tableoid AS previewd_tableoid, ctid AS previewd_ctid, %[2]s AS previewd_old FROM %[1]s) AS previewd_orig
  WHERE previewd_new.tableoid = previewd_orig.previewd_tableoid AND previewd_new.ctid = previewd_orig.previewd_ctid
  RETURNING previewd_orig.previewd_old IS NOT NULL AS nonnull,
            previewd_orig.previewd_old IS NOT NULL AND previewd_new.%[2]s IS NOT DISTINCT FROM previewd_orig.previewd_old AS same)
SELECT count(*) FILTER (WHERE nonnull), count(*) FILTER (WHERE same) FROM u`, t, col, c.expr)
		sp, err := tx.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("postgres: masking %s: %w", c.key, err)
		}
		if err := sp.QueryRow(ctx, sql).Scan(&f.NonNull, &f.Unchanged); err != nil {
			rollbackQuiet(ctx, sp)
			f.Err = redactValue(err)
			fails = append(fails, f)
			continue
		}
		if err := sp.Commit(ctx); err != nil {
			return nil, fmt.Errorf("postgres: masking %s: %w", c.key, err)
		}
		if f.Unchanged > 0 {
			fails = append(fails, f)
			continue
		}
		masked = append(masked, MaskedColumn{Column: c.qualified(), Values: f.NonNull})
	}
	if len(fails) > 0 {
		return nil, &MaskError{Failures: fails}
	}
	for t := range disabled {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+t+" ENABLE TRIGGER USER"); err != nil {
			return nil, fmt.Errorf("postgres: masking: enabling the triggers of %s again: %w", t, err)
		}
	}
	// Materialized views were filled from the original rows.
	rows, err := tx.Query(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND c.relispopulated ORDER BY c.oid`)
	if err != nil {
		return nil, fmt.Errorf("postgres: masking: %w", err)
	}
	mvs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: masking: %w", err)
	}
	for _, mv := range mvs {
		if _, err := tx.Exec(ctx, "REFRESH MATERIALIZED VIEW "+mv); err != nil {
			return nil, fmt.Errorf("postgres: masking: refreshing %s: %w", mv, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: masking: %w", err)
	}
	return masked, nil
}

// swapTemplate puts next in the template's place, in one transaction:
// the template (if any) becomes old, next becomes the template, with the
// old one's owner and template flag. It retries while either database
// has sessions (55006), for at most the template wait.
func (p *Provider) swapTemplate(ctx context.Context, conn *pgxpool.Conn, next, old string) error {
	tpl := p.reference
	var exists, isTemplate bool
	var owner, comment string
	err := conn.QueryRow(ctx, `SELECT true, datistemplate, pg_get_userbyid(datdba), COALESCE(shobj_description(oid, 'pg_database'), '')
		FROM pg_database WHERE datname = $1`, tpl).Scan(&exists, &isTemplate, &owner, &comment)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: inspecting template %s: %w", tpl, err)
	}
	swap := func() error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer p.rollback(ctx, tx)
		stmts := []string{}
		if exists {
			stmts = append(stmts,
				"ALTER DATABASE "+ident(tpl)+" RENAME TO "+ident(old),
				"COMMENT ON DATABASE "+ident(old)+" IS '"+refreshMarker+"'",
				"ALTER DATABASE "+ident(next)+" OWNER TO "+ident(owner))
		}
		stmts = append(stmts, "ALTER DATABASE "+ident(next)+" RENAME TO "+ident(tpl))
		if isTemplate {
			stmts = append(stmts, "ALTER DATABASE "+ident(tpl)+" IS_TEMPLATE true")
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		// The old template's comment, quoted by pgx (simple protocol).
		c := any(nil)
		if comment != "" {
			c = comment
		}
		if _, err := tx.Exec(ctx, "COMMENT ON DATABASE "+ident(tpl)+" IS $1", pgx.QueryExecModeSimpleProtocol, c); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	start := time.Now()
	backoff := 20 * time.Millisecond
	for {
		var holders []Holder
		for _, db := range []string{tpl, next} {
			h, err := templateHolders(ctx, conn, db)
			if err != nil {
				return fmt.Errorf("postgres: checking sessions of %s: %w", db, err)
			}
			holders = append(holders, h...)
		}
		var last error
		if len(holders) == 0 {
			err := swap()
			if err == nil {
				return nil
			}
			if pgCode(err) != "55006" {
				return fmt.Errorf("postgres: swapping in the refreshed template %s: %w", tpl, err)
			}
			last = err
		}
		waited := time.Since(start)
		if waited >= p.wait || ctx.Err() != nil {
			if last == nil {
				last = errors.New("the template has sessions")
			}
			return &TemplateBusyError{Template: tpl, Op: "renamed", Holders: holders, Waited: waited, Err: errors.Join(last, ctx.Err())}
		}
		p.log.Info("template busy; retrying the swap", "template", tpl, "sessions", len(holders), "backoff", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(min(backoff, p.wait-waited)):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func maskingErr(m map[string]string) error {
	_, err := parseMasking(m)
	return err
}

// redactValue returns err without the production value a server message
// may end with (`invalid input syntax for type integer: "…"`), so that a
// masking failure can be logged. The SQLSTATE stays.
func redactValue(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	msg := pe.Message
	if i := strings.Index(msg, `: "`); i >= 0 && strings.HasSuffix(msg, `"`) {
		msg = msg[:i] + `: "…"`
	}
	return fmt.Errorf("%s: %s (SQLSTATE %s)", pe.Severity, msg, pe.Code)
}

// ScheduledRefresh is one refresh for serve's ticker (config
// database.postgres.refreshTemplate.every): RefreshTemplate, with its
// report or its error logged. Its error is RefreshTemplate's; the old
// template then stays, and the next tick tries again.
func (p *Provider) ScheduledRefresh(ctx context.Context) error {
	rep, err := p.RefreshTemplate(ctx)
	if err != nil {
		p.log.Error("template refresh failed; the old template stays", "template", p.reference, "took", rep.Took, "err", err)
		return err
	}
	masked := make([]string, len(rep.Masked))
	for i, m := range rep.Masked {
		masked[i] = m.Column
	}
	p.log.Info("template refreshed", "template", rep.Template, "source", rep.Source, "tables", rep.Tables, "rows", rep.Rows,
		"masked", strings.Join(masked, ","), "took", rep.Took)
	for _, w := range rep.Warnings {
		p.log.Warn("template refresh", "template", rep.Template, "warning", w)
	}
	return nil
}
