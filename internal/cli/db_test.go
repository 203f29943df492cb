package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// pgConfig writes a config of kind postgres against a new database of the
// shared cluster, with passwordSecret if secret is not empty, and returns
// its path and its data dir (not made).
func pgConfig(t *testing.T, secret string) (string, string) {
	t.Helper()
	pg := pgtest.Shared(t)
	db := pg.NewDatabase(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := ""
	if secret != "" {
		ps = ", passwordSecret: " + secret
	}
	return writeConfig(t, "dataDir: "+dataDir+"\nforge: {git: {url: /tmp/repo}}\ndatabase:\n  kind: postgres\n  postgres: {adminURL: '"+pg.AdminURLFor(db)+"'"+ps+"}\n"), dataDir
}

// TestDBCreateFormats: db create against a real PostgreSQL in each
// --format; the variables work (a connection as the role lands in its
// schema), text hides the password unless --show-secrets, github masks
// every secret before any line that holds it and appends to $GITHUB_ENV,
// and with passwordSecret no dataDir/secret is written.
func TestDBCreateFormats(t *testing.T) {
	cfg, dataDir := pgConfig(t, "cli-test-secret-0123456789")
	base := []string{"db", "create", "--config", cfg, "--key", "pr-1"}
	t.Cleanup(func() { run(t, "db", "drop", "--config", cfg, "--key", "pr-1") })
	t.Setenv("GITHUB_ENV", "")

	code, out, errs := run(t, append(base, "--show-secrets")...)
	if code != 0 {
		t.Fatalf("create --show-secrets: %d %q", code, errs)
	}
	vars := parseLines(t, out)
	dbURL := vars["DATABASE_URL"]
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if len(pw) < 16 || vars["DATABASE_SCHEMA"] != "preview_pr_1" {
		t.Fatalf("create printed %q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connecting with the printed URL: %v", err)
	}
	var schema string
	conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema)
	conn.Close(ctx)
	if schema != "preview_pr_1" {
		t.Errorf("the printed URL lands in schema %q", schema)
	}

	t.Run("text", func(t *testing.T) {
		code, out, errs := run(t, base...)
		if code != 0 || strings.Contains(out, pw) || out != strings.ReplaceAll("DATABASE_SCHEMA=preview_pr_1\nDATABASE_URL="+dbURL+"\n", pw, "xxxxx") {
			t.Errorf("text: %d %q", code, out)
		}
		if !strings.Contains(errs, "--show-secrets") {
			t.Errorf("text: stderr %q does not say how to get the password", errs)
		}
	})
	t.Run("dotenv", func(t *testing.T) {
		code, out, _ := run(t, append(base, "--format", "dotenv")...)
		if code != 0 || !strings.Contains(out, "DATABASE_URL='"+dbURL+"'\n") {
			t.Fatalf("dotenv: %d %q", code, out)
		}
		file := filepath.Join(t.TempDir(), "db.env")
		os.WriteFile(file, []byte(out), 0o600)
		got, err := exec.Command("/bin/sh", "-c", `set -a; . "$1"; printf '%s|%s' "$DATABASE_URL" "$DATABASE_SCHEMA"`, "sh", file).Output()
		if err != nil || string(got) != dbURL+"|preview_pr_1" {
			t.Errorf("sh sourcing the dotenv output: %q %v", got, err)
		}
	})
	t.Run("json", func(t *testing.T) {
		code, out, _ := run(t, append(base, "--format", "json")...)
		var got map[string]string
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || !reflect.DeepEqual(got, vars) || strings.Count(out, "\n") != 1 {
			t.Errorf("json: %d %q %v", code, out, err)
		}
	})
	t.Run("github to stdout", func(t *testing.T) {
		code, out, _ := run(t, append(base, "--format", "github")...)
		if code != 0 {
			t.Fatalf("github: %d", code)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		masks := map[string]bool{}
		for i, l := range lines {
			if m, ok := strings.CutPrefix(l, "::add-mask::"); ok {
				masks[m] = true
				continue
			}
			if strings.Contains(l, pw) && (!masks[pw] || !masks[dbURL]) {
				t.Errorf("line %d holds the password before its masks:\n%s", i, out)
			}
		}
		if !masks[pw] || !masks[dbURL] || !strings.Contains(out, "\nDATABASE_URL="+dbURL+"\n") || !strings.Contains(out, "DATABASE_SCHEMA=preview_pr_1\n") {
			t.Errorf("github: %q", out)
		}
	})
	t.Run("github to GITHUB_ENV", func(t *testing.T) {
		envFile := filepath.Join(t.TempDir(), "github_env")
		os.WriteFile(envFile, []byte("EARLIER=1\n"), 0o644)
		t.Setenv("GITHUB_ENV", envFile)
		code, out, errs := run(t, append(base, "--format", "github")...)
		if code != 0 || out != "::add-mask::"+dbURL+"\n::add-mask::"+pw+"\n" || !strings.Contains(errs, "$GITHUB_ENV") {
			t.Fatalf("github: %d stdout %q stderr %q; want only the masks on stdout", code, out, errs)
		}
		b, _ := os.ReadFile(envFile)
		if string(b) != "EARLIER=1\nDATABASE_SCHEMA=preview_pr_1\nDATABASE_URL="+dbURL+"\n" {
			t.Errorf("GITHUB_ENV holds %q", b)
		}
		// A new file is made 0600.
		fresh := filepath.Join(t.TempDir(), "new_env")
		t.Setenv("GITHUB_ENV", fresh)
		if code, _, _ := run(t, append(base, "--format", "github")...); code != 0 {
			t.Fatal(code)
		}
		if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("new GITHUB_ENV: %v %v; want mode 0600", fi, err)
		}
		// ">> $GITHUB_ENV" would put the masks in the file, where the
		// runner does not read them: refused, nothing written.
		f, err := os.OpenFile(envFile, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		t.Setenv("GITHUB_ENV", envFile)
		var errb bytes.Buffer
		if code := Run(context.Background(), append(base, "--format", "github"), f, &errb); code != 1 || !strings.Contains(errb.String(), "without \">> $GITHUB_ENV\"") {
			t.Errorf("stdout redirected to GITHUB_ENV: exit %d, %q", code, errb.String())
		}
		if b2, _ := os.ReadFile(envFile); string(b2) != string(b) {
			t.Errorf("the refused run wrote to GITHUB_ENV: %q", b2)
		}
	})
	if code, _, errs := run(t, append(base, "--format", "yaml")...); code != 2 || !strings.Contains(errs, "--format") {
		t.Errorf("--format yaml: %d %q; want exit 2", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "secret")); !os.IsNotExist(err) {
		t.Errorf("db create with passwordSecret wrote dataDir/secret (%v)", err)
	}
	if entries, err := os.ReadDir(dataDir); !os.IsNotExist(err) {
		t.Errorf("db create with passwordSecret made dataDir: %v %v", entries, err)
	}
}

// TestDBCreateSecretFile: without passwordSecret, db create keeps the
// random secret in dataDir (0600), and a second create prints the same URL.
func TestDBCreateSecretFile(t *testing.T) {
	cfg, dataDir := pgConfig(t, "")
	t.Cleanup(func() { run(t, "db", "drop", "--config", cfg, "--key", "pr-2") })
	_, first, _ := run(t, "db", "create", "--config", cfg, "--key", "pr-2", "--format", "json")
	code, second, errs := run(t, "db", "create", "--config", cfg, "--key", "pr-2", "--format", "json")
	if code != 0 || first != second {
		t.Errorf("second create: %d %q %q; want %q", code, second, errs, first)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("dataDir/secret: %v %v", fi, err)
	}
}

func parseLines(t *testing.T, out string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("line %q is not NAME=value", l)
		}
		vars[k] = v
	}
	return vars
}

func TestSecretsIn(t *testing.T) {
	for name, tc := range map[string]struct {
		v    string
		want []string
	}{
		"url":             {"postgres://preview_pr_1:abc123@h:5432/db?sslmode=disable", []string{"abc123"}},
		"url encoded":     {"postgres://u:p%40ss%2Fw@h/db", []string{"p%40ss%2Fw", "p@ss/w"}},
		"url no password": {"postgres://u@h/db", nil},
		"sqlite":          {"sqlite:/data/databases/pr-1.sqlite", nil},
		"schema":          {"preview_pr_1", nil},
		"keyword/value":   {"host=h user=app password=s3cret dbname=shop", []string{"s3cret"}},
		"quoted escaped":  {`host=h password='a\'b c' dbname=shop`, []string{`'a\'b c'`, "a'b c"}},
		"no password kv":  {"host=h user=app", nil},
	} {
		t.Run(name, func(t *testing.T) {
			if got := secretsIn(tc.v); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("secretsIn(%q) = %q; want %q", tc.v, got, tc.want)
			}
		})
	}
}
