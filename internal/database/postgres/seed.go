package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/previewd/previewd/internal/database"
)

// SeedError says which statement of a seed file failed.
type SeedError struct {
	// Statement is the failing statement's number (from 1; empty
	// statements and comments do not count).
	Statement int
	// Line and Column are where the error is in the file (from 1): the
	// server's error position when it gives one, else the statement's
	// start.
	Line, Column int
	// Text is the start of the failing statement's first line.
	Text string
	Err  error
}

func (e *SeedError) Error() string {
	return fmt.Sprintf("seed: line %d, column %d (statement %d: %q): %v", e.Line, e.Column, e.Statement, e.Text, e.Err)
}

func (e *SeedError) Unwrap() error { return e.Err }

// Seed runs sql, the text of an SQL file (database.postgres.seed), in the
// database conn reaches, as the role of conn.Vars["DATABASE_URL"] (the
// environment's, so it can do nothing the app could not). The whole text
// is sent at once with the simple protocol (any number of statements,
// dollar-quoted bodies included, and no parameters) inside one
// transaction, so a seed that fails leaves nothing behind. It works
// through PgBouncer in transaction mode. A statement that fails is
// reported as a *SeedError with its line in the file.
func Seed(ctx context.Context, conn database.Conn, sql string) error {
	url := conn.Vars["DATABASE_URL"]
	if url == "" {
		return errors.New("seed: no DATABASE_URL")
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("seed: DATABASE_URL: %w", err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("seed: connecting: %w", err)
	}
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		c.Close(cctx)
	}()
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	mrr := c.PgConn().Exec(ctx, sql)
	done := 0
	var serr error
	for mrr.NextResult() {
		if _, err := mrr.ResultReader().Close(); err != nil {
			serr = err
			break
		}
		done++
	}
	if err := mrr.Close(); serr == nil {
		serr = err
	}
	if serr != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		c.Exec(cctx, "ROLLBACK") // the session is closed next anyway
		return seedError(sql, done, serr)
	}
	if _, err := c.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("seed: committing: %w", err)
	}
	return nil
}

// seedError locates err in sql: at the server's position if it gives one,
// else at the start of statement done+1 (done statements succeeded).
func seedError(sql string, done int, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return fmt.Errorf("seed: %w", err)
	}
	stmts := splitStatements(sql)
	e := &SeedError{Statement: done + 1, Err: err}
	off := -1
	if pe.Position > 0 {
		off = runeOffset(sql, int(pe.Position)-1)
		for i, s := range stmts {
			if off >= s {
				e.Statement = i + 1
			}
		}
	}
	if e.Statement <= len(stmts) {
		start := stmts[e.Statement-1]
		if off < 0 {
			off = start
		}
		text, _, _ := strings.Cut(sql[start:], "\n")
		if len(text) > 80 {
			text = text[:80] + "…"
		}
		e.Text = strings.TrimSpace(text)
	}
	if off < 0 {
		off = len(sql)
	}
	e.Line = strings.Count(sql[:off], "\n") + 1
	e.Column = utf8.RuneCountInString(sql[strings.LastIndexByte(sql[:off], '\n')+1:off]) + 1
	return e
}

// runeOffset returns the byte offset of the n-th rune (from 0) of s; the
// server counts positions in characters.
func runeOffset(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}

// splitStatements returns the byte offsets at which sql's statements
// start (their first character that is not blank or a comment), as the
// server splits them: at semicolons outside quotes ('…', E'…', "…",
// $tag$…$tag$) and comments (-- and nested /* */). Empty statements are
// skipped, as the server skips them.
func splitStatements(sql string) []int {
	var starts []int
	in := false // inside a statement
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				return starts
			}
			i += j + 1
			continue
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			depth, j := 1, i+2
			for j < len(sql) && depth > 0 {
				switch {
				case strings.HasPrefix(sql[j:], "/*"):
					depth, j = depth+1, j+2
				case strings.HasPrefix(sql[j:], "*/"):
					depth, j = depth-1, j+2
				default:
					j++
				}
			}
			i = j
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
			continue
		case c == ';':
			in = false
			i++
			continue
		}
		if !in {
			starts = append(starts, i)
			in = true
		}
		switch {
		case c == '\'':
			escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e')
			i = skipQuoted(sql, i, '\'', escapes)
		case c == '"':
			i = skipQuoted(sql, i, '"', false)
		case c == '$':
			if tag, ok := dollarTag(sql[i:]); ok {
				if j := strings.Index(sql[i+len(tag):], tag); j >= 0 {
					i += len(tag) + j + len(tag)
				} else {
					i = len(sql)
				}
			} else {
				i++
			}
		default:
			i++
		}
	}
	return starts
}

// skipQuoted returns the offset after the quoted text starting at sql[i]
// (a doubled quote is a quote; with escapes, so is a backslashed one).
func skipQuoted(sql string, i int, q byte, escapes bool) int {
	for j := i + 1; j < len(sql); j++ {
		switch {
		case escapes && sql[j] == '\\':
			j++
		case sql[j] == q:
			if j+1 < len(sql) && sql[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(sql)
}

// dollarTag returns the dollar-quote tag ($$ or $name$) s starts with.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '$':
			return s[:j+1], true
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80, j > 1 && c >= '0' && c <= '9':
		default:
			return "", false
		}
	}
	return "", false
}

var _ database.Seeder = (*Provider)(nil)

// Seed implements database.Seeder with the package's Seed: the file runs
// as the role conn names, not as the admin.
func (p *Provider) Seed(ctx context.Context, conn database.Conn, sql string) error {
	return Seed(ctx, conn, sql)
}
