package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/database"
)

// crashEnv, when set, makes the test binary act as a previewd that is
// killed (SIGKILL, no cleanup) at one stage of Ensure.
const crashEnv = "PREVIEWD_TEST_CRASH_AT"

type crashRequest struct {
	// The Options a child needs (Options' Logger and Hook cannot be
	// marshalled).
	AdminURL        string
	Isolation       string
	Template        string
	ConnectionLimit int
	PasswordSecret  []byte

	Instance string

	Key   string
	Stage string
	Op    string // "" (Ensure) or "reset" (Reset, preparing with fill("new"))
	// CloseAfter is the child's Provider.closeAfter (-1: the default).
	CloseAfter int
}

func crashHelper() int {
	var req crashRequest
	if err := json.Unmarshal([]byte(os.Getenv(crashEnv)), &req); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := New(ctx, Options{
		AdminURL:        req.AdminURL,
		Isolation:       req.Isolation,
		Template:        req.Template,
		ConnectionLimit: req.ConnectionLimit,
		PasswordSecret:  req.PasswordSecret,
		Instance:        req.Instance,
		Hook: func(ctx context.Context, stage, name string) error {
			if stage == req.Stage {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if req.CloseAfter >= 0 {
		p.closeAfter = req.CloseAfter
	}
	if req.Op == "reset" {
		_, err = p.Reset(ctx, database.Target{Key: req.Key}, fill("new"))
	} else {
		_, err = p.Ensure(ctx, database.Target{Key: req.Key})
	}
	fmt.Fprintf(os.Stderr, "Ensure or Reset returned without reaching stage %s: %v\n", req.Stage, err)
	return 3
}

// crash runs Ensure(key) in a child process that is killed at stage.
func crash(t *testing.T, o Options, key, stage string) {
	t.Helper()
	crashOp(t, o, key, stage, "", -1)
}

// crashOp runs Ensure(key) or Reset(key) (op "reset") in a child process
// that is killed at stage.
func crashOp(t *testing.T, o Options, key, stage, op string, closeAfter int) {
	t.Helper()
	req, err := json.Marshal(crashRequest{
		AdminURL: o.AdminURL, Isolation: o.Isolation, Template: o.Template,
		ConnectionLimit: o.ConnectionLimit, PasswordSecret: o.PasswordSecret,
		Instance: o.Instance, Key: key, Stage: stage, Op: op, CloseAfter: closeAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(req))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("crash helper: %v\n%s", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("crash helper was not killed at %s: %v\n%s", stage, err, out)
	}
}

// state describes what exists of name, e.g. "role database-unmarked".
func (f *fixture) state(name, key string) string {
	f.t.Helper()
	var parts []string
	if f.exists("role", name) {
		parts = append(parts, "role")
	}
	if f.exists("schema", name) {
		parts = append(parts, "schema")
	}
	if f.exists("database", name) {
		c := scalar[string](f, f.db, "SELECT COALESCE(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1", name)
		if c == (mark{key: key}).String() {
			parts = append(parts, "database")
		} else {
			parts = append(parts, "database-unmarked")
		}
	}
	return strings.Join(parts, " ")
}

func TestCrash(t *testing.T) {
	f := setup(t)
	tpl := f.c.NewDatabase(t)
	if err := f.c.Exec(f.ctx, tpl, "CREATE TABLE seed AS SELECT 1 AS id"); err != nil {
		t.Fatal(err)
	}
	schemaCfg := f.cfg(IsolationSchema)
	dbCfg := f.cfg(IsolationDatabase)
	dbCfg.Template = tpl
	ps, pd := f.provider(schemaCfg), f.provider(dbCfg)

	works := func(t *testing.T, p *Provider, key string) {
		t.Helper()
		c := f.ensure(p, key)
		conn := connect(f.ctx, t, c.Vars["DATABASE_URL"])
		if code := sqlState(f.ctx, conn, "CREATE TABLE after_crash (id int)"); code != "" {
			t.Fatalf("using the environment after the crash: %s", code)
		}
		conn.Close(f.ctx)
	}

	t.Run("schema mode is one transaction", func(t *testing.T) {
		k := key("crash-s")
		n := mustName(t, k)
		crash(t, schemaCfg, k, "schema-tx")
		if s := f.state(n, k); s != "" {
			t.Fatalf("after a crash inside the transaction: %q exists; want nothing", s)
		}
		works(t, ps, k)
		if s := f.state(n, k); s != "role schema" {
			t.Fatalf("after Ensure: %q", s)
		}
	})

	t.Run("schema mode cancelled", func(t *testing.T) {
		k := key("cancel-s")
		ctx, cancel := context.WithCancel(f.ctx)
		o := schemaCfg
		o.Hook = func(context.Context, string, string) error { cancel(); return nil }
		p := f.provider(o)
		if _, err := p.Ensure(ctx, database.Target{Key: k}); err == nil {
			t.Fatal("Ensure with a cancelled context succeeded")
		}
		if s := f.state(mustName(t, k), k); s != "" {
			t.Fatalf("after cancelling: %q exists", s)
		}
	})

	t.Run("database mode, role made: Ensure finishes", func(t *testing.T) {
		k := key("crash-r")
		n := mustName(t, k)
		crash(t, dbCfg, k, "role")
		if s := f.state(n, k); s != "role" {
			t.Fatalf("after crash: %q; want role", s)
		}
		works(t, pd, k)
		if s := f.state(n, k); s != "role database" {
			t.Fatalf("after Ensure: %q", s)
		}
	})

	t.Run("database mode, role made: Drop finishes", func(t *testing.T) {
		k := key("crash-d")
		n := mustName(t, k)
		crash(t, dbCfg, k, "role")
		if err := pd.Drop(f.ctx, pd.Items(database.Target{Key: k})); err != nil {
			t.Fatal(err)
		}
		if s := f.state(n, k); s != "" {
			t.Fatalf("after Drop: %q left", s)
		}
	})

	t.Run("database mode, role made: Collect removes the orphan", func(t *testing.T) {
		k := key("crash-c")
		n := mustName(t, k)
		crash(t, dbCfg, k, "role")
		removed, err := pd.Collect(f.ctx, map[string]bool{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(removed, ","), "role "+n) {
			t.Errorf("Collect removed %v", removed)
		}
		if s := f.state(n, k); s != "" {
			t.Fatalf("after Collect: %q left", s)
		}
	})

	t.Run("database mode, database made but not marked", func(t *testing.T) {
		k := key("crash-m")
		n := mustName(t, k)
		crash(t, dbCfg, k, "database")
		if s := f.state(n, k); s != "role database-unmarked" {
			t.Fatalf("after crash: %q", s)
		}
		// Live: Collect keeps it; Ensure finishes it.
		if removed, err := pd.Collect(f.ctx, map[string]bool{k: true}); err != nil || len(removed) != 0 {
			t.Fatalf("Collect of a live environment: %v %v", removed, err)
		}
		works(t, pd, k)
		if s := f.state(n, k); s != "role database" {
			t.Fatalf("after Ensure: %q", s)
		}
		// Crash again at the same point on a new key; not live: Collect
		// finds the unmarked database by its marked owner.
		k2 := key("crash-m")
		n2 := mustName(t, k2)
		crash(t, dbCfg, k2, "database")
		removed, err := pd.Collect(f.ctx, map[string]bool{k: true})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(removed)
		if want := []string{"database " + n2, "role " + n2}; !slices.Equal(removed, want) {
			t.Errorf("Collect removed %q; want %q", removed, want)
		}
		if s := f.state(n2, k2); s != "" {
			t.Fatalf("after Collect: %q left", s)
		}
	})
	f.checkProduction()
}
