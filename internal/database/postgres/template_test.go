package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/database"
)

// prodData is production's data for the refresh tests, next to the
// fixture's public.orders: users with emails (and a NULL phone), a trigger
// that records updates, and a materialized view over the emails.
const prodData = `
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL UNIQUE, name text, phone text);
INSERT INTO users SELECT g, 'person' || g || '@real.test', 'Real Name ' || g, CASE WHEN g % 2 = 0 THEN '+1555' || g END FROM generate_series(1, 40) g;
CREATE SCHEMA billing;
CREATE TABLE billing.cards (user_id int REFERENCES users (id), number text);
INSERT INTO billing.cards SELECT g, '4111' || g FROM generate_series(1, 10) g;
CREATE TABLE changes (what text);
CREATE FUNCTION record_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO changes VALUES (OLD.email); RETURN NEW; END $$;
CREATE TRIGGER users_changes AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION record_change();
CREATE MATERIALIZED VIEW user_emails AS SELECT id, email FROM users;
CREATE TABLE schema_migrations (version bigint PRIMARY KEY);
INSERT INTO schema_migrations VALUES (1), (2);
`

var goodMasking = map[string]string{
	"users.email":          "'user' || id || '@example.com'",
	"users.name":           "'name ' || id",
	"users.phone":          "CASE WHEN phone IS NOT NULL THEN '+10000000' || id END",
	"billing.cards.number": "'0000'",
}

var tplSeq int

// refreshFixture returns a fixture with production's data and a provider
// whose template is a fresh name, dropped (with its refresh databases)
// when the test ends.
func refreshFixture(t *testing.T, mod func(*Options)) (*fixture, *Provider, string) {
	t.Helper()
	f := setup(t)
	f.admin(prodData)
	tplSeq++
	tpl := fmt.Sprintf("tpl_%d_%d", os.Getpid()%100000, tplSeq)
	o := f.cfg(IsolationDatabase)
	o.Template = tpl
	o.Masking = goodMasking
	o.TemplateWait = 500 * time.Millisecond
	if mod != nil {
		mod(&o)
	}
	p := f.provider(o)
	t.Cleanup(func() {
		for _, n := range []string{tpl, tpl + refreshNext, tpl + refreshOld} {
			if err := f.c.DropDatabase(context.Background(), n); err != nil {
				t.Errorf("dropping %s: %v", n, err)
			}
		}
	})
	return f, p, tpl
}

// prodSnapshot is what production holds: its catalog, every table's rows
// and the users' values.
func prodSnapshot(t *testing.T, f *fixture) string {
	t.Helper()
	cat := catalogPrint(t, f, f.db)
	rows := tableCounts(t, f, f.db)
	users := scalar[string](f, f.db, "SELECT string_agg(concat_ws(',', id, email, name, phone), ';' ORDER BY id) FROM users")
	changes := scalar[int64](f, f.db, "SELECT count(*) FROM changes")
	return fmt.Sprintf("%s\n%v\n%s\n%d", strings.Join(cat, "\n"), rows, users, changes)
}

func checkSame(t *testing.T, what, before, after string) {
	t.Helper()
	if before != after {
		t.Errorf("%s changed:\nbefore:\n%s\nafter:\n%s", what, before, after)
	}
}

func TestRefreshTemplateMasks(t *testing.T) {
	f, p, tpl := refreshFixture(t, nil)
	before := prodSnapshot(t, f)
	for round := 1; round <= 2; round++ { // the second replaces a template
		rep, err := p.RefreshTemplate(f.ctx)
		if err != nil {
			t.Fatalf("round %d: RefreshTemplate: %v", round, err)
		}
		wantMasked := []MaskedColumn{{"billing.cards.number", 10}, {"public.users.email", 40}, {"public.users.name", 40}, {"public.users.phone", 20}}
		if !slices.Equal(rep.Masked, wantMasked) || rep.Template != tpl || rep.Source != f.db || rep.Tables != 5 || rep.Rows != 3+40+10+2 || len(rep.Warnings) > 0 {
			t.Errorf("round %d: report %+v; want masked %v, 5 tables, 55 rows", round, rep, wantMasked)
		}
		checkSame(t, "production", before, prodSnapshot(t, f))
		for _, n := range []string{tpl + refreshNext, tpl + refreshOld} {
			if f.exists("database", n) {
				t.Errorf("round %d: %s is left", round, n)
			}
		}
	}
	// No original value is in the template, its materialized view or its
	// trigger's table; the rows and what is not masked are all there.
	if n := scalar[int64](f, tpl, `SELECT count(*) FROM users WHERE email <> 'user' || id || '@example.com' OR name <> 'name ' || id
		OR (phone IS NOT NULL) <> (id % 2 = 0) OR phone NOT LIKE '+10000000%'`); n != 0 {
		t.Errorf("%d users in the template are not masked", n)
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM users"); n != 40 {
		t.Errorf("template has %d users; want 40", n)
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM user_emails WHERE email LIKE '%@real.test'"); n != 0 {
		t.Errorf("the materialized view keeps %d original emails", n)
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM changes"); n != 0 {
		t.Errorf("the masking fired the users' trigger %d times (it records original emails)", n)
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM billing.cards WHERE number <> '0000'"); n != 0 {
		t.Errorf("%d card numbers not masked", n)
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM orders"); n != prodRows {
		t.Errorf("template has %d orders; want %d", n, prodRows)
	}
	// The trigger works again for the previews' own updates.
	if err := f.c.Exec(f.ctx, tpl, "UPDATE users SET name = 'x' WHERE id = 1; DELETE FROM changes"); err != nil {
		t.Fatal(err)
	}
	// A preview cloned from it sees masked rows.
	c := f.ensure(p, key("masked"))
	conn := connect(f.ctx, t, c.Vars["DATABASE_URL"])
	var email string
	if err := conn.QueryRow(f.ctx, "SELECT email FROM users WHERE id = 7").Scan(&email); err != nil || email != "user7@example.com" {
		t.Errorf("preview sees email %q (%v); want user7@example.com", email, err)
	}
	checkSame(t, "production", before, prodSnapshot(t, f))
}

func TestRefreshTemplateFailuresKeepOld(t *testing.T) {
	f, p, tpl := refreshFixture(t, nil)
	if _, err := p.RefreshTemplate(f.ctx); err != nil {
		t.Fatal(err)
	}
	// A table that marks this template as the one made first.
	if err := f.c.Exec(f.ctx, tpl, "CREATE TABLE sentinel ()"); err != nil {
		t.Fatal(err)
	}
	before := prodSnapshot(t, f)
	for name, tc := range map[string]struct {
		masking map[string]string
		want    []string // in the error, each naming its column
	}{
		"error":          {map[string]string{"users.email": "'a' || (1 / (id - id))", "users.name": "'n'"}, []string{"users.email: ERROR: division by zero"}},
		"identity":       {map[string]string{"users.email": "email", "users.name": "'n'"}, []string{"users.email: every value unchanged (40 of 40 non-null) by \"email\""}},
		"some unchanged": {map[string]string{"users.email": "CASE WHEN id < 5 THEN email ELSE 'x' || id END"}, []string{"users.email: 4 of 40 non-null values unchanged"}},
		"no column":      {map[string]string{"users.nope": "'x'", "nope.users.email": "'x'"}, []string{"nope.users.email: no column nope.users.email", "users.nope: no column public.users.nope"}},
		"type":           {map[string]string{"users.id": "'not a number'"}, []string{"users.id: ERROR: invalid input syntax for type integer"}},
		"value redacted": {map[string]string{"users.name": "email::int"}, []string{`users.name: ERROR: invalid input syntax for type integer: "…" (SQLSTATE 22P02)`}},
		"both":           {map[string]string{"users.email": "email", "users.phone": "phone || 1/0"}, []string{"users.email: every value", "users.phone: ERROR: division by zero"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := p.RefreshTemplateWith(f.ctx, tc.masking)
			var me *MaskError
			if !errors.As(err, &me) {
				t.Fatalf("RefreshTemplateWith = %v; want a *MaskError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(me.Failures) != len(tc.want) {
				t.Errorf("failures %v; want %d", me.Failures, len(tc.want))
			}
			if strings.Contains(err.Error(), "@real.test") {
				t.Errorf("error %q holds a production value", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("template %q kept as it was", tpl)) {
				t.Errorf("error %q does not say the template was kept", err)
			}
			if n := scalar[int64](f, tpl, "SELECT count(*) FROM pg_class WHERE relname = 'sentinel'"); n != 1 {
				t.Errorf("the template was replaced")
			}
			if f.exists("database", tpl+refreshNext) {
				t.Errorf("the unfinished copy %s is left", tpl+refreshNext)
			}
			checkSame(t, "production", before, prodSnapshot(t, f))
		})
	}
}

// TestRefreshTemplateBusy: a session on the template keeps it from being
// renamed (55006): the refresh waits TemplateWait, names the session, and
// leaves the old template and no copy.
func TestRefreshTemplateBusy(t *testing.T) {
	f, p, tpl := refreshFixture(t, nil)
	if _, err := p.RefreshTemplate(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Exec(f.ctx, tpl, "CREATE TABLE sentinel ()"); err != nil {
		t.Fatal(err)
	}
	holder := connect(f.ctx, t, f.c.AdminURLFor(tpl))
	_, err := p.RefreshTemplate(f.ctx)
	var be *TemplateBusyError
	if !errors.As(err, &be) || len(be.Holders) != 1 || !strings.Contains(err.Error(), "cannot be renamed") {
		t.Fatalf("RefreshTemplate with a session on the template = %v; want a TemplateBusyError naming it", err)
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM pg_class WHERE relname = 'sentinel'"); n != 1 {
		t.Errorf("the template was replaced")
	}
	if f.exists("database", tpl+refreshNext) {
		t.Errorf("the copy %s is left", tpl+refreshNext)
	}
	holder.Close(f.ctx)
	// Once the session ends, the refresh goes through.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := p.RefreshTemplate(f.ctx)
		if err == nil {
			break
		}
		if !errors.As(err, &be) || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM pg_class WHERE relname = 'sentinel'"); n != 0 {
		t.Errorf("the template was not replaced")
	}
}

// TestRefreshTemplateLeftovers: a copy a crashed refresh left (marked) is
// dropped; a database of someone else's with that name stops the refresh.
func TestRefreshTemplateLeftovers(t *testing.T) {
	f, p, tpl := refreshFixture(t, nil)
	next := tpl + refreshNext
	if err := f.c.CreateDatabase(f.ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Exec(f.ctx, "postgres", fmt.Sprintf(`COMMENT ON DATABASE %s IS '%s'`, ident(next), refreshMarker)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RefreshTemplate(f.ctx); err != nil {
		t.Fatalf("RefreshTemplate with a leftover copy: %v", err)
	}
	if err := f.c.CreateDatabase(f.ctx, next); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RefreshTemplate(f.ctx); !errors.Is(err, ErrForeign) {
		t.Errorf("RefreshTemplate with someone's %s = %v; want ErrForeign", next, err)
	}
	if !f.exists("database", next) {
		t.Errorf("someone's %s was dropped", next)
	}
}

// TestRefreshTemplateRefusesProduction: no template, or a template (or its
// refresh names) that is production's database, the admin database or
// the server's, is refused before anything is made, and production keeps
// everything.
func TestRefreshTemplateRefusesProduction(t *testing.T) {
	f := setup(t)
	f.admin(prodData)
	before := prodSnapshot(t, f)
	other := f.c.NewDatabase(t)
	for name, o := range map[string]func(*Options){
		"no template":             func(o *Options) { o.Template = "" },
		"admin database":          func(o *Options) { o.Isolation = IsolationSchema; o.Template = f.db },
		"production's database":   func(o *Options) { o.Template = other; o.ProductionURL = f.c.AdminURLFor(other) },
		"server's":                func(o *Options) { o.Template = "postgres" },
		"template1":               func(o *Options) { o.Template = "template1" },
		"too long with suffix":    func(o *Options) { o.Template = strings.Repeat("t", 61) },
		"suffix names production": func(o *Options) { o.Template = "shop"; o.ProductionURL = f.c.AdminURLFor("shop$new") },
	} {
		t.Run(name, func(t *testing.T) {
			opts := f.cfg(IsolationDatabase)
			opts.Masking = goodMasking
			o(&opts)
			p := f.provider(opts)
			_, err := p.RefreshTemplate(f.ctx)
			if err == nil {
				t.Fatal("RefreshTemplate succeeded")
			}
			if name != "no template" && name != "too long with suffix" && !errors.Is(err, database.ErrProduction) {
				t.Errorf("RefreshTemplate = %v; want ErrProduction", err)
			}
			checkSame(t, "production", before, prodSnapshot(t, f))
			if n := scalar[int64](f, f.db, `SELECT count(*) FROM pg_database WHERE datname LIKE '%$new' OR datname LIKE '%$old'`); n != 0 {
				t.Errorf("%d refresh databases made", n)
			}
		})
	}
	if n := scalar[int64](f, other, "SELECT count(*) FROM pg_class WHERE relname = 'users'"); n != 0 {
		t.Errorf("the other production database was written")
	}
}

// TestRefreshTemplateFromProductionURL: with productionURL, the copy is of
// its database, as its role.
func TestRefreshTemplateFromProductionURL(t *testing.T) {
	f, _, tpl := refreshFixture(t, nil)
	prod := f.c.NewDatabase(t)
	if err := f.c.Exec(f.ctx, prod, prodData); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Exec(f.ctx, prod, "CREATE TABLE only_in_prod (x int); INSERT INTO only_in_prod VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	o := f.cfg(IsolationDatabase)
	o.Template = tpl
	o.Masking = goodMasking
	o.ProductionURL = f.c.AdminURLFor(prod)
	p2 := f.provider(o)
	rep, err := p2.RefreshTemplate(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Source != prod {
		t.Errorf("source %q; want %q", rep.Source, prod)
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM only_in_prod"); n != 1 {
		t.Errorf("template has %d rows of only_in_prod; want 1", n)
	}
	if n := scalar[int64](f, tpl, "SELECT count(*) FROM users WHERE email LIKE '%@real.test'"); n != 0 {
		t.Errorf("%d emails not masked", n)
	}
}

// TestScheduledRefresh: a tick logs the report, or the failure naming the
// column, without a production value.
func TestScheduledRefresh(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	f, p, tpl := refreshFixture(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
	})
	if err := p.ScheduledRefresh(f.ctx); err != nil {
		t.Fatal(err)
	}
	p.masking = map[string]string{"users.email": "email"}
	if err := p.ScheduledRefresh(f.ctx); err == nil {
		t.Fatal("a refresh with an identity masking succeeded")
	}
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	for _, want := range []string{"msg=\"template refreshed\" template=" + tpl, "masked=billing.cards.number,public.users.email,public.users.name,public.users.phone",
		"msg=\"template refresh failed; the old template stays\"", "users.email: every value unchanged"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs do not say %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "@real.test") {
		t.Errorf("logs hold a production value:\n%s", logs)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
