package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestBanner(t *testing.T) {
	tests := []struct {
		name       string
		appBanner  string
		bannerFile *string // nil: no banner.txt
		want       string
	}{
		{"none", "", nil, ""},
		{"from banner.txt, trimmed", "", ptr("\n  Feature: dark mode  \n\n"), "Feature: dark mode"},
		{"APP_BANNER wins over banner.txt", "From the environment", ptr("From the file"), "From the environment"},
		{"APP_BANNER alone", "  Spaced  ", nil, "Spaced"},
		{"empty banner.txt", "", ptr(" \n"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, m := migrated(t)
			if tt.appBanner != "" {
				m["APP_BANNER"] = tt.appBanner
			}
			if tt.bannerFile != nil {
				if err := os.WriteFile(filepath.Join(dir, "banner.txt"), []byte(*tt.bannerFile), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			app := newTestAppIn(t, dir, m)

			_, body := app.do(t, "GET", "/healthz", "", "")
			if got := decode[health](t, body).Banner; got != tt.want {
				t.Errorf("healthz banner = %q, want %q", got, tt.want)
			}
			_, page := app.do(t, "GET", "/", "", "")
			hasBanner := strings.Contains(page, `class="banner"`)
			if tt.want == "" && hasBanner {
				t.Errorf("page shows a banner, want none")
			}
			if tt.want != "" && !strings.Contains(page, `<div class="wrap">`+tt.want+`</div>`) {
				t.Errorf("page does not show banner %q", tt.want)
			}
		})
	}
}

// Main reads banner.txt from the working directory.
func TestBannerFromWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "banner.txt"), []byte("cwd banner\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	got, err := loadBanner(os.Getenv, ".")
	if err != nil || got != "cwd banner" {
		t.Errorf("loadBanner = %q, %v", got, err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(env(map[string]string{"PREVIEW_PRODUCTION": "true", "PREVIEW_SHA": "0123456789"}), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != "8080" || c.Host != "" || !c.PreviewProduction || c.shortSHA() != "0123456" {
		t.Errorf("config = %+v", c)
	}
	if _, err := loadConfig(env(map[string]string{"PORT": "70000"}), t.TempDir()); err == nil {
		t.Errorf("PORT 70000 accepted")
	}
	if _, err := loadConfig(env(map[string]string{"LOG_LEVEL": "loud"}), t.TempDir()); err == nil {
		t.Errorf("LOG_LEVEL loud accepted")
	}
}

func TestChooseDatabase(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		path    string
		want    dbTarget
		wantErr string
	}{
		{name: "postgres URL", url: "postgres://u:p@db:5432/app", want: dbTarget{kind: kindPostgres, url: "postgres://u:p@db:5432/app"}},
		{name: "postgresql URL", url: "postgresql://u@db/app?sslmode=disable", want: dbTarget{kind: kindPostgres, url: "postgresql://u@db/app?sslmode=disable"}},
		{name: "postgres URL wins over DATABASE_PATH", url: "postgres://db/app", path: "/data/app.sqlite", want: dbTarget{kind: kindPostgres, url: "postgres://db/app"}},
		{name: "DATABASE_PATH", path: "/data/app.sqlite", want: dbTarget{kind: kindSQLite, path: "/data/app.sqlite"}},
		{name: "DATABASE_PATH wins over a sqlite URL", url: "sqlite:/other.sqlite", path: "/data/app.sqlite", want: dbTarget{kind: kindSQLite, path: "/data/app.sqlite"}},
		{name: "sqlite URL", url: "sqlite:/data/app.sqlite", want: dbTarget{kind: kindSQLite, path: "/data/app.sqlite"}},
		{name: "sqlite URL with slashes", url: "sqlite:///data/app.sqlite", want: dbTarget{kind: kindSQLite, path: "/data/app.sqlite"}},
		{name: "relative sqlite URL", url: "sqlite:app.sqlite", wantErr: "absolute file path"},
		{name: "other scheme", url: "mysql://db/app", wantErr: `unsupported scheme "mysql"`},
		{name: "nothing", wantErr: "no database configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chooseDatabase(config{DatabaseURL: tt.url, DatabasePath: tt.path})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if _, err := chooseDatabase(config{}); !errors.Is(err, errNoDatabase) {
		t.Errorf("err = %v, want errNoDatabase", err)
	}
}

func TestSQLiteDSN(t *testing.T) {
	dsn := sqliteDSN("/data/a b?c#d%e.sqlite")
	path, query, _ := strings.Cut(dsn, "?")
	if path != "file:/data/a%20b%3Fc%23d%25e.sqlite" {
		t.Errorf("path part = %q", path)
	}
	for _, want := range []string{"_pragma=busy_timeout(5000)", "_pragma=journal_mode(WAL)", "_pragma=foreign_keys(1)"} {
		if !strings.Contains(query, want) {
			t.Errorf("DSN %q lacks %s", dsn, want)
		}
	}

	// The file really is in WAL mode with foreign keys on, even at an awkward path.
	dir := t.TempDir()
	p := filepath.Join(dir, "odd ?#% name.sqlite")
	d, err := openDB(dbTarget{kind: kindSQLite, path: p})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var mode string
	var fk, timeout int
	if err := d.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	if err := d.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v", fk, err)
	}
	if err := d.QueryRow("PRAGMA busy_timeout").Scan(&timeout); err != nil || timeout != 5000 {
		t.Errorf("busy_timeout = %d, %v", timeout, err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("database not created at %q: %v", p, err)
	}
	if d.file != "odd ?#% name.sqlite" || d.label() != "sqlite · odd ?#% name.sqlite" {
		t.Errorf("file = %q, label = %q", d.file, d.label())
	}
}

func TestPostgresConfig(t *testing.T) {
	tests := []struct {
		url  string
		want pgx.QueryExecMode
	}{
		{"postgres://u:p@localhost:6432/app", pgx.QueryExecModeExec},
		{"postgres://u:p@localhost:6432/app?sslmode=disable", pgx.QueryExecModeExec},
		{"postgres://u:p@localhost/app?default_query_exec_mode=simple_protocol", pgx.QueryExecModeSimpleProtocol},
		{"postgresql://u:p@localhost/app?default_query_exec_mode=cache_statement", pgx.QueryExecModeCacheStatement},
	}
	for _, tt := range tests {
		cfg, err := postgresConfig(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.DefaultQueryExecMode != tt.want {
			t.Errorf("%s: exec mode %v, want %v", tt.url, cfg.DefaultQueryExecMode, tt.want)
		}
		// PgBouncer rejects search_path as a startup parameter; the app
		// must not add one.
		for k := range cfg.RuntimeParams {
			if k == "search_path" || k == "options" {
				t.Errorf("%s: startup parameter %s set", tt.url, k)
			}
		}
	}
	if _, err := postgresConfig("postgres://u:secret@localhost/app?default_query_exec_mode=bogus"); err == nil {
		t.Errorf("bogus exec mode accepted")
	} else if strings.Contains(err.Error(), "secret") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestSchemaMismatchMessage(t *testing.T) {
	msg := (&schemaMismatchError{want: "pr_42", got: "public"}).Error()
	for _, want := range []string{`DATABASE_SCHEMA is "pr_42"`, `current_schema() is "public"`, "refusing to run"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if msg := (&schemaMismatchError{want: "pr_42"}).Error(); !strings.Contains(msg, "NULL") {
		t.Errorf("message for a NULL schema: %q", msg)
	}
}

func ptr[T any](v T) *T { return &v }
