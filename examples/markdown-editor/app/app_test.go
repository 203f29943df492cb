package app

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// env returns a getenv function over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// runCmd runs the command line in dir with the environment m and returns the
// exit code and what it wrote to stderr. A serve that does start is stopped
// after half a minute, so a test expecting it to refuse fails instead of
// hanging; a migrate on a loaded machine (PostgreSQL, -race) is not cut
// off by it.
func runCmd(t *testing.T, ctx context.Context, dir string, m map[string]string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, env(m), dir, &stdout, &stderr)
	return code, stderr.String()
}

// sqliteEnv returns a fresh SQLite database path in its own directory, and an
// environment naming it.
func sqliteEnv(t *testing.T) (dir string, m map[string]string) {
	t.Helper()
	dir = t.TempDir()
	return dir, map[string]string{
		"DATABASE_PATH": filepath.Join(dir, "test.sqlite"),
		// Should a serve that ought to refuse start, it takes a free port.
		"HOST": "127.0.0.1",
		"PORT": "0",
	}
}

// migrated returns an environment with a migrated SQLite database.
func migrated(t *testing.T) (dir string, m map[string]string) {
	t.Helper()
	dir, m = sqliteEnv(t)
	if code, stderr := runCmd(t, t.Context(), dir, m, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d:\n%s", code, stderr)
	}
	return dir, m
}

// rawDB opens the test database directly, to check what the app wrote.
func rawDB(t *testing.T, m map[string]string) *sql.DB {
	t.Helper()
	d, err := sql.Open("sqlite", sqliteDSN(m["DATABASE_PATH"]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func queryInt(t *testing.T, d *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := d.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// testApp is the app's handler over a migrated SQLite database.
type testApp struct {
	srv  *server
	http *httptest.Server
	env  map[string]string
	logs *syncBuffer
}

func newTestApp(t *testing.T, extra map[string]string) *testApp {
	t.Helper()
	dir, m := migrated(t)
	for k, v := range extra {
		m[k] = v
	}
	return newTestAppIn(t, dir, m)
}

func newTestAppIn(t *testing.T, dir string, m map[string]string) *testApp {
	t.Helper()
	cfg, err := loadConfig(env(m), dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := connect(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	srv, err := newServer(cfg, d, log)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.handler())
	t.Cleanup(hs.Close)
	return &testApp{srv: srv, http: hs, env: m, logs: logs}
}

// do sends a request and returns the status and body. Redirects are not
// followed.
func (a *testApp) do(t *testing.T, method, path, contentType, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestMigrate(t *testing.T) {
	dir, m := sqliteEnv(t)

	code, stderr := runCmd(t, t.Context(), dir, m, "migrate")
	if code != 0 {
		t.Fatalf("migrate exited %d:\n%s", code, stderr)
	}
	for _, f := range []string{"00001_create_documents.sql", "00002_index_documents_updated_at.sql", "00003_welcome_document.sql"} {
		if !strings.Contains(stderr, "file="+f) {
			t.Errorf("migrate log does not mention %s:\n%s", f, stderr)
		}
	}
	d := rawDB(t, m)
	if v := queryInt(t, d, "SELECT max(version_id) FROM goose_db_version"); v != 3 {
		t.Errorf("schema version = %d, want 3", v)
	}
	if n := queryInt(t, d, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'documents_updated_at_idx'"); n != 1 {
		t.Errorf("index documents_updated_at_idx: found %d, want 1", n)
	}
	var title string
	if err := d.QueryRow("SELECT title FROM documents").Scan(&title); err != nil || title != "Welcome to the markdown editor" {
		t.Errorf("welcome document: title %q, err %v", title, err)
	}

	// Running it again changes nothing.
	code, stderr = runCmd(t, t.Context(), dir, m, "migrate")
	if code != 0 || !strings.Contains(stderr, "applied=0") {
		t.Errorf("second migrate exited %d, want 0 with applied=0:\n%s", code, stderr)
	}
	if n := queryInt(t, d, "SELECT count(*) FROM documents"); n != 1 {
		t.Errorf("documents after second migrate = %d, want 1", n)
	}
}

func TestMigrateWithSQLiteURL(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "from-url.sqlite")
	code, stderr := runCmd(t, t.Context(), dir, map[string]string{"DATABASE_URL": "sqlite:" + path}, "migrate")
	if code != 0 || !strings.Contains(stderr, `database="sqlite · from-url.sqlite"`) {
		t.Fatalf("migrate exited %d:\n%s", code, stderr)
	}
	if n := queryInt(t, rawDB(t, map[string]string{"DATABASE_PATH": path}), "SELECT count(*) FROM documents"); n != 1 {
		t.Errorf("documents = %d, want the welcome document", n)
	}
}

func TestMigrateFailures(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"no database", map[string]string{}, "no database configured"},
		{"unsupported scheme", map[string]string{"DATABASE_URL": "mysql://localhost/db"}, `unsupported scheme \"mysql\"`},
		{"relative sqlite URL", map[string]string{"DATABASE_URL": "sqlite:db.sqlite"}, "absolute file path"},
		{"missing directory", map[string]string{"DATABASE_PATH": "/nonexistent-dir/sub/db.sqlite"}, "open sqlite database /nonexistent-dir/sub/db.sqlite"},
		{"bad port", map[string]string{"PORT": "http", "DATABASE_PATH": "x.sqlite"}, `invalid PORT \"http\"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runCmd(t, t.Context(), t.TempDir(), tt.env, "migrate")
			if code != 1 {
				t.Errorf("exit code = %d, want 1", code)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantErr, stderr)
			}
		})
	}
}

func TestServeRefusesPendingMigrations(t *testing.T) {
	t.Run("fresh database", func(t *testing.T) {
		dir, m := sqliteEnv(t)
		code, stderr := runCmd(t, t.Context(), dir, m, "serve")
		if code != 1 {
			t.Fatalf("serve exited %d, want 1:\n%s", code, stderr)
		}
		for _, want := range []string{"pending migrations", "version 1 (00001_create_documents.sql)", "3 (00003_welcome_document.sql)", "run the migrate command first"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr does not contain %q:\n%s", want, stderr)
			}
		}
		// serve only reads: it must not have created goose's version table.
		if n := queryInt(t, rawDB(t, m), "SELECT count(*) FROM sqlite_master WHERE name = 'goose_db_version'"); n != 0 {
			t.Errorf("serve created the goose version table")
		}
	})
	t.Run("one migration pending", func(t *testing.T) {
		dir, m := migrated(t)
		if _, err := rawDB(t, m).Exec("DELETE FROM goose_db_version WHERE version_id = 3"); err != nil {
			t.Fatal(err)
		}
		code, stderr := runCmd(t, t.Context(), dir, m, "serve")
		if code != 1 {
			t.Fatalf("serve exited %d, want 1:\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "pending migration: version 3 (00003_welcome_document.sql)") ||
			!strings.Contains(stderr, "database is at version 2") {
			t.Errorf("stderr does not name version 3 as the one pending:\n%s", stderr)
		}
	})
}

var listenAddr = regexp.MustCompile(`msg=listening addr=(\S+)`)

func TestServe(t *testing.T) {
	dir, m := migrated(t)
	m["HOST"] = "127.0.0.1"
	m["PORT"] = "0"
	m["PREVIEW_SHA"] = "abcdef0123456789"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, env(m), dir, io.Discard, stderr) }()

	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; {
		if match := listenAddr.FindStringSubmatch(stderr.String()); match != nil {
			addr = match[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("serve did not log its address:\n%s", stderr)
		} else {
			select {
			case code := <-done:
				t.Fatalf("serve exited %d:\n%s", code, stderr)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}

	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h health
	err = json.NewDecoder(res.Body).Decode(&h)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || h.Status != "ok" || h.SHA != "abcdef0123456789" || h.Database != "sqlite" {
		t.Fatalf("healthz: status %d, body %+v, err %v", res.StatusCode, h, err)
	}

	cancel() // as SIGTERM does
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d after shutdown, want 0:\n%s", code, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after its context was cancelled")
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Errorf("no shutdown log:\n%s", stderr)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Errorf("server still answering after shutdown")
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{[]string{"help"}, 0, "markdown-editor migrate", ""},
		{[]string{"--help"}, 0, "DATABASE_SCHEMA", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"migrate", "extra"}, 2, "", "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, env(nil), t.TempDir(), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(stdout.String(), tt.wantOut) || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tt.wantOut, stderr.String(), tt.wantErr)
			}
		})
	}
}

func TestSource(t *testing.T) {
	for _, name := range []string{
		"source.go",
		"app.go",
		"migrations/sqlite/00001_create_documents.sql",
		"migrations/sqlite/00003_welcome_document.sql",
		"migrations/postgres/00001_create_documents.sql",
		"migrations/postgres/00003_welcome_document.sql",
		"templates/layout.html",
		"static/style.css",
		"static/editor.js",
	} {
		if _, err := fs.Stat(Source, name); err != nil {
			t.Errorf("Source lacks %s: %v", name, err)
		}
	}
	b, err := fs.ReadFile(Source, "source.go")
	if err != nil || !strings.Contains(string(b), "var Source embed.FS") {
		t.Errorf("Source's source.go is not this package's: err %v", err)
	}

	// Every file of the package directory is in Source, and the dialects
	// have the same migration versions.
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".go") {
			if _, err := fs.Stat(Source, e.Name()); err != nil {
				t.Errorf("Source lacks %s", e.Name())
			}
		}
	}
	sqlite, _ := fs.Glob(Source, "migrations/sqlite/*.sql")
	postgres, _ := fs.Glob(Source, "migrations/postgres/*.sql")
	if len(sqlite) == 0 || len(sqlite) != len(postgres) {
		t.Errorf("migrations differ between dialects: %v vs %v", sqlite, postgres)
	}
	for i := range min(len(sqlite), len(postgres)) {
		if filepath.Base(sqlite[i]) != filepath.Base(postgres[i]) {
			t.Errorf("migration %d: %s vs %s", i, sqlite[i], postgres[i])
		}
	}

	// The package must build on its own, outside this module: it may import
	// nothing from previewd.
	goFiles, _ := fs.Glob(Source, "*.go")
	for _, name := range goFiles {
		src, _ := fs.ReadFile(Source, name)
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/previewd/") {
				t.Errorf("%s imports %s; package app must be self-contained", name, p)
			}
		}
	}
}
