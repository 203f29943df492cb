package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestSplitStatements: statements start where the server would split
// them, past comments, quotes and dollar-quoted bodies.
func TestSplitStatements(t *testing.T) {
	for name, tc := range map[string]struct {
		sql  string
		want []string // each statement's first characters
	}{
		"one":       {"SELECT 1", []string{"SELECT 1"}},
		"two":       {"SELECT 1;\nSELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		"empty":     {";;  ;\n", nil},
		"comments":  {"-- a; b\n/* c; /* nested; */ d; */ SELECT 1; -- end", []string{"SELECT 1"}},
		"quotes":    {"INSERT INTO t VALUES ('a;b', 'it''s;'); SELECT \"x;y\"", []string{"INSERT", "SELECT \"x;y\""}},
		"escapes":   {"SELECT E'a\\';b'; SELECT 2", []string{"SELECT E", "SELECT 2"}},
		"dollar":    {"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; SELECT 2", []string{"CREATE FUNCTION", "SELECT 2"}},
		"tagged":    {"DO $x$ BEGIN PERFORM 1; END $x$; SELECT $1", []string{"DO $x$", "SELECT $1"}},
		"unclosed":  {"SELECT 'a; SELECT 2", []string{"SELECT 'a"}},
		"no ending": {"SELECT 1; -- only a comment", []string{"SELECT 1"}},
	} {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, off := range splitStatements(tc.sql) {
				got = append(got, tc.sql[off:])
			}
			if len(got) != len(tc.want) {
				t.Fatalf("statements %q; want %d", got, len(tc.want))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("statement %d starts %q; want %q", i+1, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestSeedErrorPosition: an error is placed at the server's position when
// it gives one (in characters, not bytes), else at the failing
// statement's start.
func TestSeedErrorPosition(t *testing.T) {
	sql := "INSERT INTO t VALUES ('é');\n-- comment\nSELECT 1;\n  INSERT INTO u VALUES (1);\n"
	for name, tc := range map[string]struct {
		done     int
		position int32
		line     int
		col      int
		stmt     int
	}{
		"execution error":    {2, 0, 4, 3, 3},
		"syntax at position": {1, int32(len([]rune("INSERT INTO t VALUES ('é');\n-- comment\nSELECT "))) + 1, 3, 8, 2},
		"first statement":    {0, 0, 1, 1, 1},
	} {
		t.Run(name, func(t *testing.T) {
			err := seedError(sql, tc.done, &pgconn.PgError{Code: "42601", Message: "boom", Position: tc.position})
			var se *SeedError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v; want a *SeedError", err)
			}
			if se.Line != tc.line || se.Column != tc.col || se.Statement != tc.stmt {
				t.Errorf("line %d column %d statement %d; want %d, %d, %d", se.Line, se.Column, se.Statement, tc.line, tc.col, tc.stmt)
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Errorf("the server's error is not wrapped")
			}
		})
	}
}

// TestSeed runs seeds as the environment's role through PgBouncer: a good
// one commits everything; a failing one commits nothing and names its
// line; the role cannot reach production's tables.
func TestSeed(t *testing.T) {
	f := setup(t)
	cfg := f.cfg(IsolationSchema)
	cfg.AppHost = f.c.BouncerHostPort()
	p := f.provider(cfg)
	c := f.ensure(p, key("seed"))
	name := c.Vars["DATABASE_SCHEMA"]
	if err := execAs(f.ctx, c.Vars["DATABASE_URL"], "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	count := func() int64 {
		return scalar[int64](f, f.db, fmt.Sprintf("SELECT count(*) FROM %s.users", ident(name)))
	}

	good := `-- seed.sql
INSERT INTO users VALUES (1, 'a@example.com');
INSERT INTO users VALUES (2, 'semi;colon@example.com');
CREATE FUNCTION n() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM users; $$;
`
	if err := Seed(f.ctx, c, good); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d users after the seed; want 2", n)
	}

	for name, tc := range map[string]struct {
		sql  string
		line int
		text string
		code string
	}{
		"constraint": {"INSERT INTO users VALUES (3, 'c');\n\nINSERT INTO users VALUES (1, 'dup');\n", 3, "INSERT INTO users VALUES (1, 'dup');", "23505"},
		"syntax":     {"INSERT INTO users VALUES (4, 'd');\nINSERT INTO users VALUES (5, 'e');\nINSRT INTO users VALUES (6, 'f');\n", 3, "INSRT INTO users VALUES (6, 'f');", "42601"},
		"production": {"INSERT INTO users VALUES (7, 'g');\nSELECT * FROM public.orders;", 2, "SELECT * FROM public.orders;", "42501"},
	} {
		t.Run(name, func(t *testing.T) {
			err := Seed(f.ctx, c, tc.sql)
			var se *SeedError
			if !errors.As(err, &se) {
				t.Fatalf("Seed = %v; want a *SeedError", err)
			}
			if se.Line != tc.line || se.Text != tc.text || pgCode(err) != tc.code {
				t.Errorf("Seed = %v; want line %d, %q, SQLSTATE %s", err, tc.line, tc.text, tc.code)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("line %d", tc.line)) {
				t.Errorf("the message %q does not name line %d", err, tc.line)
			}
			if n := count(); n != 2 {
				t.Errorf("%d users after a failed seed; want 2 (nothing of it kept)", n)
			}
		})
	}
	f.checkProduction()
}
