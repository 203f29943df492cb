// Package pgtest starts a throwaway PostgreSQL cluster and a PgBouncer in
// front of it, for tests that need real servers.
//
// The cluster is made with initdb in a temporary directory, listens on
// 127.0.0.1 on a free port with scram-sha-256 password authentication (no
// trust), keeps its unix socket in the temporary directory and runs with
// fsync off. Its superuser is "admin". PgBouncer runs in transaction pooling
// mode with a small pool (one server connection per database and user by
// default, to make pooling bugs reproducible) and authenticates every role,
// including roles created while the tests run, through auth_query against
// pg_shadow.
//
// When the process runs as root, the servers (which refuse to run as root)
// run as the system user "postgres", which the Debian packages create.
//
// Typical use, once per test package:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		c := pgtest.Shared(t) // skips, or fails in CI, without binaries
//		db := c.NewDatabase(t)
//		...
//	}
//
// The binaries are looked up in $PGTEST_BINDIR, on PATH and in the usual
// distribution directories; scripts/install-test-deps.sh installs them.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/previewd/previewd/internal/testsvc"
)

// ErrNotInstalled is returned (wrapped) by Start when the PostgreSQL or
// PgBouncer binaries cannot be found.
var ErrNotInstalled = errors.New("pgtest: server binaries not installed (run scripts/install-test-deps.sh)")

// AdminUser is the superuser of every cluster.
const AdminUser = "admin"

// Options configures Start. The zero value is usable.
type Options struct {
	// PoolSize is PgBouncer's default_pool_size: server connections per
	// database and user pair. Default 1.
	PoolSize int
	// NoBouncer skips starting PgBouncer.
	NoBouncer bool
	// BouncerSettings are extra [pgbouncer] settings (name = value),
	// written after the defaults, which they override (e.g.
	// server_reset_query_always = 1 with server_reset_query = DISCARD ALL).
	BouncerSettings map[string]string
	// Preload names server libraries for shared_preload_libraries (e.g.
	// pg_stat_statements); those the installation lacks are left out.
	Preload []string
	// Settings are extra server settings (postgres -c name=value).
	Settings map[string]string
	// StartTimeout bounds each server's start. Default 30s.
	StartTimeout time.Duration
}

// Cluster is a running throwaway PostgreSQL cluster and, unless
// Options.NoBouncer, a PgBouncer in front of it.
type Cluster struct {
	dir         string
	password    string
	port        int
	bouncerPort int
	cred        *syscall.Credential
	pg          *testsvc.Process
	bouncer     *testsvc.Process
	closeOnce   sync.Once
	closeErr    error
	dbSeq       atomic.Int64
}

const host = "127.0.0.1"

// Start creates and starts a cluster (and a PgBouncer), waiting until both
// accept connections. The caller must Close it.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.PoolSize <= 0 {
		opts.PoolSize = 1
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	bin, err := findPostgres()
	if err != nil {
		return nil, err
	}
	bouncerBin := ""
	if !opts.NoBouncer {
		if bouncerBin, err = findBouncer(); err != nil {
			return nil, err
		}
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-*")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, password: randomHex(16), cred: cred}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if err := c.chown(dir); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx, bin); err != nil {
		return nil, err
	}
	if err := retryPort(func() error { return c.startPostgres(ctx, bin, opts) }); err != nil {
		return nil, err
	}
	if bouncerBin != "" {
		if err := retryPort(func() error { return c.startBouncer(ctx, bouncerBin, opts) }); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// errAddrInUse marks a start that failed because the port was taken
// between choosing it and binding it.
var errAddrInUse = errors.New("address already in use")

// retryPort runs start and, if it failed because its port was taken, once
// more (with a new port).
func retryPort(start func() error) error {
	err := start()
	if errors.Is(err, errAddrInUse) {
		err = start()
	}
	return err
}

func (c *Cluster) initdb(ctx context.Context, bin string) error {
	pwfile := filepath.Join(c.dir, "pwfile")
	if err := c.writeFile(pwfile, c.password+"\n"); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", filepath.Join(c.dir, "data"), "-U", AdminUser, "--pwfile="+pwfile,
		"--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
	cmd.Dir = c.dir
	c.setCred(cmd)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out.String())
	}
	return nil
}

func (c *Cluster) startPostgres(ctx context.Context, bin string, opts Options) error {
	port, err := pickPort()
	if err != nil {
		return err
	}
	settings := map[string]string{
		"listen_addresses":        host,
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": c.dir,
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"max_connections":         "300",
		"password_encryption":     "scram-sha-256",
	}
	var preload []string
	libdir := filepath.Join(bin, "..", "lib")
	if real, err := filepath.EvalSymlinks(filepath.Join(bin, "postgres")); err == nil {
		libdir = filepath.Join(filepath.Dir(real), "..", "lib")
	}
	for _, lib := range opts.Preload {
		if _, err := os.Stat(filepath.Join(libdir, lib+".so")); err == nil {
			preload = append(preload, lib)
		}
	}
	if len(preload) > 0 {
		settings["shared_preload_libraries"] = strings.Join(preload, ",")
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", filepath.Join(c.dir, "data")}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	p, err := c.spawn(filepath.Join(bin, "postgres"), args, filepath.Join(c.dir, "postgres.log"), syscall.SIGQUIT)
	if err != nil {
		return err
	}
	c.pg, c.port = p, port
	return c.waitReady(ctx, p, opts.StartTimeout, c.DSN(AdminUser, c.password, "postgres"), "postgres")
}

func (c *Cluster) startBouncer(ctx context.Context, bin string, opts Options) error {
	port, err := pickPort()
	if err != nil {
		return err
	}
	userlist := filepath.Join(c.dir, "userlist.txt")
	if err := c.writeFile(userlist, fmt.Sprintf("%q %q\n", AdminUser, c.password)); err != nil {
		return err
	}
	ini := filepath.Join(c.dir, "pgbouncer.ini")
	conf := fmt.Sprintf(`[databases]
* = host=%[1]s port=%[2]d

[pgbouncer]
listen_addr = %[1]s
listen_port = %[3]d
unix_socket_dir =
pool_mode = transaction
default_pool_size = %[4]d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 1000
max_db_connections = 0
auth_type = scram-sha-256
auth_file = %[5]s
auth_user = %[6]s
auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename=$1
admin_users = %[6]s
ignore_startup_parameters = extra_float_digits,options
server_reset_query =
log_connections = 0
log_disconnections = 0
`, host, c.port, port, opts.PoolSize, userlist, AdminUser)
	extra := make([]string, 0, len(opts.BouncerSettings))
	for k := range opts.BouncerSettings {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	for _, k := range extra {
		conf += k + " = " + opts.BouncerSettings[k] + "\n"
	}
	if err := c.writeFile(ini, conf); err != nil {
		return err
	}
	p, err := c.spawn(bin, []string{ini}, filepath.Join(c.dir, "pgbouncer.log"), syscall.SIGTERM)
	if err != nil {
		return err
	}
	c.bouncer, c.bouncerPort = p, port
	return c.waitReady(ctx, p, opts.StartTimeout, c.BouncerDSN(AdminUser, c.password, "postgres"), "pgbouncer")
}

// spawn starts a server process as the server user, its output going to
// logPath. deathSig is sent to it if this process dies first.
func (c *Cluster) spawn(path string, args []string, logPath string, deathSig syscall.Signal) (*testsvc.Process, error) {
	cmd := exec.Command(path, args...)
	cmd.Dir = c.dir
	c.setCred(cmd)
	p, err := testsvc.Start(cmd, testsvc.Options{Log: logPath, DeathSignal: deathSig})
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return p, nil
}

// waitReady waits until dsn accepts a login, the process exits or the
// timeout passes.
func (c *Cluster) waitReady(ctx context.Context, p *testsvc.Process, timeout time.Duration, dsn, what string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := errors.New("no connection tried yet")
	for {
		select {
		case <-p.Done():
			log := p.LogTail(4000)
			if strings.Contains(log, "already in use") {
				return fmt.Errorf("pgtest: %s: %w\n%s", what, errAddrInUse, log)
			}
			return fmt.Errorf("pgtest: %s exited: %v\n%s", what, p.State(), log)
		case <-ctx.Done():
			_ = p.Stop(syscall.SIGKILL, time.Second) // killed either way
			return fmt.Errorf("pgtest: %s did not accept connections in %s: %w\n%s", what, timeout, last, p.LogTail(4000))
		case <-time.After(20 * time.Millisecond):
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, dsn)
		ccancel()
		if err == nil {
			// The server answered; how the probe closes does not matter.
			_ = conn.Close(ctx)
			return nil
		}
		last = err
	}
}

// Close stops PgBouncer and the cluster and removes the temporary
// directory. It is safe to call more than once.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		if c.bouncer != nil {
			errs = append(errs, stopped(c.bouncer.Stop(syscall.SIGTERM, 5*time.Second)))
		}
		if c.pg != nil {
			// SIGINT is PostgreSQL's fast shutdown.
			errs = append(errs, stopped(c.pg.Stop(syscall.SIGINT, 10*time.Second)))
		}
		errs = append(errs, os.RemoveAll(c.dir))
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// stopped prefixes a stop's error with the package's name.
func stopped(err error) error {
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// Dir returns the cluster's temporary directory (data, logs, socket).
func (c *Cluster) Dir() string { return c.dir }

// Password returns the admin user's password.
func (c *Cluster) Password() string { return c.password }

// HostPort returns the server's address, host:port.
func (c *Cluster) HostPort() string { return net.JoinHostPort(host, strconv.Itoa(c.port)) }

// BouncerHostPort returns PgBouncer's address, host:port, or "" if it was
// not started.
func (c *Cluster) BouncerHostPort() string {
	if c.bouncer == nil {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(c.bouncerPort))
}

// AdminURL returns the URL of the admin superuser on database postgres.
func (c *Cluster) AdminURL() string { return c.DSN(AdminUser, c.password, "postgres") }

// AdminURLFor returns the URL of the admin superuser on database db.
func (c *Cluster) AdminURLFor(db string) string { return c.DSN(AdminUser, c.password, db) }

// DSN returns a URL that connects to the server directly.
func (c *Cluster) DSN(user, password, db string) string {
	return dsn(c.HostPort(), user, password, db)
}

// BouncerDSN returns a URL that connects through PgBouncer. Clients must
// not use named prepared statements (with pgx, use the simple protocol),
// since PgBouncer's transaction mode does not keep them.
func (c *Cluster) BouncerDSN(user, password, db string) string {
	return dsn(c.BouncerHostPort(), user, password, db)
}

func dsn(hostPort, user, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: hostPort, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Connect opens a connection to db as admin, directly to the server.
func (c *Cluster) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, c.AdminURLFor(db))
}

// Exec runs sql as admin in db on a new connection.
func (c *Cluster) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := c.Connect(ctx, db)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, sql, args...)
	return errors.Join(err, conn.Close(context.WithoutCancel(ctx)))
}

// CreateDatabase creates an empty database named name, owned by admin.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	return c.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// DropDatabase drops database name, disconnecting its sessions.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	return c.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// NewDatabase creates a new empty database with a unique name, dropped when
// the test ends, and returns its name.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), c.dbSeq.Add(1))
	// The test's context ends before its cleanups run: the drop keeps only
	// its values.
	tctx := t.Context()
	ctx, cancel := context.WithTimeout(tctx, 30*time.Second)
	defer cancel()
	if err := c.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("pgtest: creating database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(tctx), 30*time.Second)
		defer cancel()
		if err := c.DropDatabase(ctx, name); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return name
}

// Logs returns the tail of the server's and PgBouncer's logs, for
// failure messages.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, p := range []*testsvc.Process{c.pg, c.bouncer} {
		if p != nil {
			fmt.Fprintf(&b, "==> %s <==\n%s\n", filepath.Base(p.LogPath()), p.LogTail(8000))
		}
	}
	return b.String()
}

var shared = &testsvc.Shared[*Cluster]{
	Start: func(ctx context.Context) (*Cluster, error) {
		return Start(ctx, Options{Preload: []string{"pg_stat_statements"}})
	},
	Timeout:      2 * time.Minute,
	NotInstalled: ErrNotInstalled,
}

// Shared returns the cluster shared by the tests of this process, starting
// it on first use. Without the binaries it skips the test, or fails it when
// the CI variable is set (in CI a test that needs a server must run). Use
// Main (or CloseShared) in TestMain so it is stopped at the end.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	return shared.Get(t)
}

// CloseShared stops the shared cluster, if one was started.
func CloseShared() { shared.Close() }

// SkipOrFatal ends the test for err: a skip if err is ErrNotInstalled and
// the CI variable is unset (or "false" or "0"), else a failure.
func SkipOrFatal(t testing.TB, err error) {
	t.Helper()
	testsvc.SkipOrFatal(t, err, ErrNotInstalled)
}

// InCI reports whether the CI environment variable says the tests run in
// continuous integration.
func InCI() bool { return testsvc.InCI() }

// Main runs the tests and then stops the shared cluster, if one was
// started. Use it as: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	CloseShared()
	return code
}

// findPostgres returns the directory holding initdb and postgres.
func findPostgres() (string, error) {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		if has(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w: PGTEST_BINDIR=%s has no initdb and postgres", ErrNotInstalled, d)
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	// Debian/Ubuntu and RHEL keep server binaries off PATH; prefer the
	// newest major version.
	var dirs []string
	for _, g := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(g)
		dirs = append(dirs, m...)
	}
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: initdb and postgres not found on PATH or in the distribution's directories", ErrNotInstalled)
}

// versionOf returns the major version number in a binary directory's path.
func versionOf(dir string) int {
	for _, part := range strings.FieldsFunc(dir, func(r rune) bool { return r == '/' || r == '-' }) {
		if n, err := strconv.Atoi(part); err == nil {
			return n
		}
	}
	return 0
}

func findBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: pgbouncer not found", ErrNotInstalled)
}

// serverCredential returns the credential servers run with: nil (this
// process's) normally, the system user postgres when running as root,
// since PostgreSQL and PgBouncer refuse to run as root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		// The Debian packages create it; create it if they did not.
		out, aerr := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres").CombinedOutput()
		if aerr != nil {
			return nil, fmt.Errorf("pgtest: running as root and there is no user postgres to run the servers as; creating it failed: %w: %s", aerr, out)
		}
		if u, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("pgtest: looking up user postgres: %w", err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgtest: user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func (c *Cluster) setCred(cmd *exec.Cmd) {
	if c.cred == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = c.cred
}

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// writeFile writes a private file the servers can read.
func (c *Cluster) writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	return c.chown(path)
}

// pickPort chooses a port for a server (another process may take it
// before the server binds it; Start then retries once); tests replace it.
var pickPort = testsvc.FreePort

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
