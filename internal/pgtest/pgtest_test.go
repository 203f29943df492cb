package pgtest_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/previewd/previewd/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAdminAndPasswordAuth(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := ctxT(t)

	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		t.Fatalf("admin connect: %v\n%s", err, c.Logs())
	}
	defer conn.Close(ctx)
	var super bool
	var method string
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || !super {
		t.Fatalf("admin is not a superuser: %v %v", super, err)
	}
	// Every pg_hba line uses scram-sha-256: no trust.
	rows, err := conn.Query(ctx, "SELECT auth_method FROM pg_hba_file_rules")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(&method); err != nil {
			t.Fatal(err)
		}
		n++
		if method != "scram-sha-256" {
			t.Errorf("pg_hba has auth method %q; want only scram-sha-256", method)
		}
	}
	if rows.Err() != nil || n == 0 {
		t.Fatalf("pg_hba rules: %d, %v", n, rows.Err())
	}

	// A wrong password and no password are refused, directly and through
	// PgBouncer.
	for _, dsn := range []string{
		c.DSN(pgtest.AdminUser, "wrong", "postgres"),
		c.DSN(pgtest.AdminUser, "", "postgres"),
		c.BouncerDSN(pgtest.AdminUser, "wrong", "postgres"),
	} {
		bad, err := pgconn.Connect(ctx, dsn)
		if err == nil {
			bad.Close(ctx)
			t.Fatalf("connected with a bad password: %s", dsn)
		}
		var pe *pgconn.PgError
		// The server says 28P01; PgBouncer reports a failed SASL exchange
		// as 08P01.
		if !errors.As(err, &pe) || (pe.Code != "28P01" && pe.Code != "08P01") {
			t.Errorf("bad password: got %v; want an authentication failure", err)
		}
	}
	if !strings.HasPrefix(c.AdminURL(), "postgres://admin:") {
		t.Errorf("AdminURL = %q", c.AdminURL())
	}
}

// A role created at run time logs in through PgBouncer (auth_query), and
// PgBouncer pools in transaction mode with one server connection.
func TestBouncerRuntimeRole(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := ctxT(t)
	db := c.NewDatabase(t)
	if err := c.Exec(ctx, db, "CREATE ROLE pgtest_rt LOGIN PASSWORD 'pw-1'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS pgtest_rt") })

	cfg, err := pgx.ParseConfig(c.BouncerDSN("pgtest_rt", "pw-1", db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	var pids = map[int32]bool{}
	var conns []*pgx.Conn
	for i := 0; i < 3; i++ {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("role through PgBouncer: %v\n%s", err, c.Logs())
		}
		conns = append(conns, conn)
	}
	for _, conn := range conns {
		var pid int32
		var user string
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid(), current_user").Scan(&pid, &user); err != nil {
			t.Fatal(err)
		}
		if user != "pgtest_rt" {
			t.Errorf("current_user = %q", user)
		}
		pids[pid] = true
		conn.Close(ctx)
	}
	if len(pids) != 1 {
		t.Errorf("three clients used %d server connections; want 1 (pool size 1)", len(pids))
	}
	if _, err := pgconn.Connect(ctx, c.BouncerDSN("pgtest_rt", "pw-2", db)); err == nil {
		t.Fatal("wrong password accepted by PgBouncer")
	}
}

func TestStartClose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second cluster")
	}
	ctx := ctxT(t)
	c, err := pgtest.Start(ctx, pgtest.Options{PoolSize: 2, Settings: map[string]string{"application_name": "pgtest-own"}})
	if err != nil {
		pgtest.SkipOrFatal(t, err)
	}
	conn, err := pgx.Connect(ctx, c.BouncerDSN(pgtest.AdminUser, c.Password(), "postgres"))
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	conn.Close(ctx)
	dir := c.Dir()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temp dir %s still exists after Close: %v", dir, err)
	}
	if _, err := pgconn.Connect(ctx, c.AdminURL()); err == nil {
		t.Error("server still accepts connections after Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSkipOrFatalWithoutBinaries(t *testing.T) {
	t.Setenv("PGTEST_BINDIR", t.TempDir())
	_, err := pgtest.Start(context.Background(), pgtest.Options{})
	if !errors.Is(err, pgtest.ErrNotInstalled) {
		t.Fatalf("Start without binaries: %v; want ErrNotInstalled", err)
	}
	t.Setenv("CI", "")
	if pgtest.InCI() {
		t.Error("InCI with CI unset")
	}
	t.Setenv("CI", "true")
	if !pgtest.InCI() {
		t.Error("not InCI with CI=true")
	}
}
