package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "previewd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	good := writeConfig(t, "forge: {git: {url: /tmp/repo}}\n")
	if code, out, errs := run(t, "validate", "--config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("valid config: code %d, out %q, err %q", code, out, errs)
	}
	bad := writeConfig(t, "forge: {git: {url: /tmp/repo}}\nruntime: {kind: lokal}\ndatabase: {kind: mysql}\n")
	code, _, errs := run(t, "validate", "--config", bad)
	if code != 1 {
		t.Errorf("invalid config: exit %d, want 1", code)
	}
	for _, want := range []string{`runtime.kind: unknown value "lokal"; want local`, `database.kind: unknown value "mysql"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr %q lacks %q", errs, want)
		}
	}
	if code, _, errs := run(t, "validate", "--config", filepath.Join(t.TempDir(), "none.yaml")); code != 1 || !strings.Contains(errs, "reading config") {
		t.Errorf("missing file: %d %q", code, errs)
	}
	if code, _, _ := run(t, "serve", "--config", bad); code != 1 {
		t.Errorf("serve with a bad config: exit %d, want 1", code)
	}
}

func TestVersion(t *testing.T) {
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "previewd ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestDBSQLite(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, "dataDir: "+dir+"\nforge: {git: {url: /tmp/repo}}\nmigrate: 'echo migrated $DATABASE_PATH > \"$DATABASE_PATH.migrated\"'\n")
	code, out, errs := run(t, "db", "create", "--config", cfg, "--key", "pr-7")
	path := filepath.Join(dir, "databases", "pr-7.sqlite")
	if code != 0 || !strings.Contains(out, "DATABASE_PATH="+path+"\n") || !strings.Contains(out, "DATABASE_URL=sqlite:"+path+"\n") {
		t.Fatalf("db create: %d %q %q", code, out, errs)
	}
	os.WriteFile(path, []byte("data"), 0o644)
	if code, out2, _ := run(t, "db", "create", "--config", cfg, "--key", "pr-7"); code != 0 || out2 != out {
		t.Errorf("second create: %d %q", code, out2)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Errorf("second create lost data: %q", b)
	}
	if code, _, errs := run(t, "db", "migrate", "--config", cfg, "--key", "pr-7"); code != 0 {
		t.Errorf("migrate: %d %s", code, errs)
	}
	if b, _ := os.ReadFile(path + ".migrated"); !strings.Contains(string(b), "migrated "+path) {
		t.Errorf("migrate did not run with the variables: %q", b)
	}
	for _, key := range []string{"x'; DROP TABLE t; --", "../../etc", "PR-7", "", strings.Repeat("a", 64)} {
		code, _, errs := run(t, "db", "create", "--config", cfg, "--key", key)
		if code != 1 || !strings.Contains(errs, "--key") {
			t.Errorf("key %q: %d %q", key, code, errs)
		}
	}
	if code, _, errs := run(t, "db", "drop", "--config", cfg, "--key", "production"); code != 1 || !strings.Contains(errs, "production") {
		t.Errorf("drop production: %d %q", code, errs)
	}
	if code, _, _ := run(t, "db", "drop", "--config", cfg, "--key", "pr-7"); code != 0 {
		t.Errorf("drop: %d", code)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("drop left the file: %v", err)
	}
	if code, _, _ := run(t, "db", "drop", "--config", cfg, "--key", "pr-7"); code != 0 {
		t.Errorf("second drop: %d", code)
	}
}

// TestDBMigrateEnvironment: the migrate command gets what serve gives it
// (the basic variables, the inherited ones, the configured env, PREVIEW_*
// with PREVIEW_NUMBER for pr-N, the database's), and none of previewd's
// own secrets.
func TestDBMigrateEnvironment(t *testing.T) {
	t.Setenv("PREVIEWD_TEST_SECRET", "s3cret-token")
	t.Setenv("EXTRA_OK", "inherited")
	dir := t.TempDir()
	cfg := writeConfig(t, "dataDir: "+dir+"\ndomain: preview.test\nforge: {git: {url: /tmp/repo}}\n"+
		"runtime: {local: {run: 'true', env: {FEATURE: 'on'}, inheritEnv: [EXTRA_OK]}}\n"+
		"migrate: 'env > \"$DATABASE_PATH.env\"'\n")
	if code, _, errs := run(t, "db", "migrate", "--config", cfg, "--key", "pr-7"); code != 0 {
		t.Fatalf("migrate: %d %s", code, errs)
	}
	b, err := os.ReadFile(filepath.Join(dir, "databases", "pr-7.sqlite.env"))
	if err != nil {
		t.Fatal(err)
	}
	got := "\n" + string(b)
	for _, want := range []string{"PREVIEW_NUMBER=7", "PREVIEW_KEY=pr-7", "PREVIEW_PRODUCTION=false", "FEATURE=on", "EXTRA_OK=inherited", "DATABASE_URL=sqlite:", "PATH="} {
		if !strings.Contains(got, "\n"+want) {
			t.Errorf("the migrate command lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(got, "s3cret-token") || strings.Contains(got, "PREVIEWD_TEST_SECRET") {
		t.Errorf("previewd's own secret reached the migrate command:\n%s", b)
	}
}

// TestValidateRepoFile: validate checks the app's .previewd.yaml too:
// the one named, or the one at the root of the working tree it runs in,
// with no config needed in an app's repository.
func TestValidateRepoFile(t *testing.T) {
	good := writeConfig(t, "forge: {git: {url: /tmp/repo}}\n")
	dir := t.TempDir()
	file := filepath.Join(dir, ".previewd.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("runtime: {local: {run: ./app, healthPath: /}}\npaths: [apps/web/**]\n")
	if code, out, errs := run(t, "validate", "--config", good, "--repo-file", file); code != 0 || !strings.Contains(out, file+": ok") || !strings.Contains(out, good+": ok") {
		t.Errorf("good files: code %d, out %q, err %q", code, out, errs)
	}
	write("runtime: {local: {env: {TOKEN: x}}}\n")
	code, _, errs := run(t, "validate", "--config", good, "--repo-file", file)
	if want := "runtime.local.env is not allowed in " + file + ": secrets stay in previewd's config"; code != 1 || !strings.Contains(errs, want) {
		t.Errorf("forbidden key: code %d, err %q; want %q", code, errs, want)
	}
	write("runtime: {local: {healthPath: x}}\npaths: [\"a/[\"]\n")
	code, _, errs = run(t, "validate", "--config", good, "--repo-file", file)
	for _, want := range []string{"runtime.local.healthPath", "paths[0]"} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("bad values: code %d, err %q lacks %s", code, errs, want)
		}
	}

	// Inside a working tree, without previewd's config: the tree's file.
	if err := os.Mkdir(filepath.Join(dir, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "apps", "web")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	write("bulid: make\n")
	code, _, errs = run(t, "validate")
	if code != 1 || !strings.Contains(errs, "bulid: unknown key in "+file) {
		t.Errorf("the working tree's file: code %d, err %q", code, errs)
	}
	write("migrate: ./app migrate\n")
	if code, out, errs := run(t, "validate"); code != 0 || out != file+": ok\n" {
		t.Errorf("the working tree's good file alone: code %d, out %q, err %q", code, out, errs)
	}
}
