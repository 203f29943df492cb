package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/pgtest"
)

func TestJudgePooling(t *testing.T) {
	const schema = "preview_previewd_check_0a1b2c3d"
	for name, tc := range map[string]struct {
		s           sessions
		leak, pool  bool
		say, notSay []string
		adminWarn   bool
		adminSay    string // default "adminPooled: true"
	}{
		"direct": {
			s:    sessions{address: "db:5432", firstPID: 10, secondPID: 11, before: schema, after: schema},
			say:  []string{"db:5432: direct connection, no pooler"},
			pool: false,
		},
		"direct, the first client's SET is its own": {
			s:   sessions{address: "db:5432", firstPID: 10, secondPID: 11, before: schema, after: "public"},
			say: []string{"direct connection, no pooler"},
		},
		"pgbouncer, another server session": {
			s:    sessions{address: "pgb:6432", firstPID: 10, secondPID: 11, before: schema, after: schema, bouncer: "PgBouncer 1.18.0"},
			pool: true,
			say:  []string{"PgBouncer 1.18.0 answered", "could not be tested"},
		},
		"pooled and reset": {
			s:    sessions{address: "pgb:6432", firstPID: 10, secondPID: 10, before: schema, after: schema, bouncer: "PgBouncer 1.21.0"},
			pool: true,
			say:  []string{"pooled by PgBouncer 1.21.0", "reset between clients"},
		},
		"leak, PgBouncer 1.18": {
			s:      sessions{address: "pgb:6432", firstPID: 10, secondPID: 10, before: schema, after: "public", bouncer: "PgBouncer 1.18.0"},
			leak:   true,
			pool:   true,
			say:    []string{"leaks", "pid 10", "search_path public instead of " + schema, "server_reset_query_always = 1", "needs PgBouncer 1.20 or later; this is PgBouncer 1.18.0"},
			notSay: []string{"or track_extra_parameters"},
		},
		"leak, PgBouncer 1.22": {
			s:    sessions{address: "pgb:6432", firstPID: 10, secondPID: 10, before: schema, after: "public", bouncer: "PgBouncer 1.22.1"},
			leak: true,
			pool: true,
			say:  []string{"server_reset_query_always = 1", "or track_extra_parameters = search_path on PgBouncer 1.20 or later"},
		},
		"leak, version unknown": {
			s:    sessions{address: "pgb:6432", firstPID: 10, secondPID: 10, before: schema, after: "public"},
			leak: true,
			pool: true,
			say:  []string{"server_reset_query_always = 1", "or track_extra_parameters = search_path"},
		},
		"admin pooled, not configured": {
			s:         sessions{address: "db:5432", firstPID: 10, secondPID: 11, before: schema, after: schema, adminSame: true},
			say:       []string{"direct connection"},
			adminWarn: true,
		},
		"admin pooled, database isolation": {
			s:         sessions{address: "db:5432", firstPID: 10, secondPID: 11, before: schema, after: schema, adminSame: true, databaseIsolation: true},
			say:       []string{"direct connection"},
			adminWarn: true,
			adminSay:  "reach PostgreSQL itself",
		},
		"admin pooled, configured": {
			s:   sessions{address: "db:5432", firstPID: 10, secondPID: 11, before: schema, after: schema, adminSame: true, adminPooledConfigured: true},
			say: []string{"direct connection"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := judgePooling(tc.s)
			if c.Leak != tc.leak || c.Pooled != tc.pool {
				t.Fatalf("leak %v, pooled %v; want %v, %v (%s)", c.Leak, c.Pooled, tc.leak, tc.pool, c.Message)
			}
			for _, s := range tc.say {
				if !strings.Contains(c.Message, s) {
					t.Errorf("message %q lacks %q", c.Message, s)
				}
			}
			for _, s := range tc.notSay {
				if strings.Contains(c.Message, s) {
					t.Errorf("message %q has %q", c.Message, s)
				}
			}
			if tc.adminSay == "" {
				tc.adminSay = "adminPooled: true"
			}
			if (c.AdminWarning != "") != tc.adminWarn || tc.adminWarn && !strings.Contains(c.AdminWarning, tc.adminSay) {
				t.Errorf("admin warning %q; want one: %v", c.AdminWarning, tc.adminWarn)
			}
		})
	}
}

// TestCheckPooling probes the real servers: PostgreSQL directly, the
// shared PgBouncer (transaction mode, no reset query: the leak), and a
// PgBouncer with server_reset_query_always = 1 (fixed). The probe role is
// gone afterwards.
func TestCheckPooling(t *testing.T) {
	f := setup(t)
	probes := func(c *pgtest.Cluster, db string) int64 {
		conn, err := c.Connect(f.ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(f.ctx)
		var n int64
		if err := conn.QueryRow(f.ctx, "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, 'preview_previewd_check_')").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("direct", func(t *testing.T) {
		c, err := f.provider(f.cfg(IsolationSchema)).CheckPooling(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Leak || c.Pooled || !strings.Contains(c.Message, "direct connection, no pooler") || c.AdminWarning != "" {
			t.Fatalf("%+v; want a direct connection", c)
		}
	})
	t.Run("pgbouncer, no reset", func(t *testing.T) {
		o := f.cfg(IsolationSchema)
		o.AppHost = f.c.BouncerHostPort()
		c, err := f.provider(o).CheckPooling(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Leak || !strings.Contains(c.Message, "server_reset_query_always = 1") || !strings.Contains(c.Message, "this is PgBouncer 1.") {
			t.Fatalf("%+v; want a leak, the fix and PgBouncer's version", c)
		}
		t.Log(c.Message)
	})
	t.Run("pgbouncer, database isolation", func(t *testing.T) {
		o := f.cfg(IsolationDatabase)
		o.AppHost = f.c.BouncerHostPort()
		c, err := f.provider(o).CheckPooling(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Leak {
			t.Fatalf("%+v; want a leak", c)
		}
	})
	t.Run("pgbouncer admin without adminPooled", func(t *testing.T) {
		o := f.cfg(IsolationSchema)
		o.AdminURL = f.c.BouncerDSN(pgtest.AdminUser, f.c.Password(), f.db)
		o.AppHost = f.c.BouncerHostPort()
		c, err := f.provider(o).CheckPooling(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(c.AdminWarning, "adminPooled: true") {
			t.Fatalf("%+v; want the adminPooled warning", c)
		}
	})
	t.Run("pgbouncer, server_reset_query_always", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(f.ctx, 45*time.Second)
		defer cancel()
		cl, err := pgtest.Start(ctx, pgtest.Options{BouncerSettings: map[string]string{
			"server_reset_query":        "DISCARD ALL",
			"server_reset_query_always": "1",
		}})
		if err != nil {
			pgtest.SkipOrFatal(t, err)
		}
		defer cl.Close()
		p, err := New(ctx, Options{AdminURL: cl.AdminURL(), AppHost: cl.BouncerHostPort(), PasswordSecret: []byte(testSecret)})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, err := p.CheckPooling(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Leak || !c.Pooled || !strings.Contains(c.Message, "reset between clients") {
			t.Fatalf("%+v; want pooled without a leak", c)
		}
		if n := probes(cl, "postgres"); n != 0 {
			t.Fatalf("%d probe roles left", n)
		}
	})
	if n := probes(f.c, f.db); n != 0 {
		t.Fatalf("%d probe roles left", n)
	}
}

// TestProbeCollected: a probe role and schema a crash left are this
// instance's to collect.
func TestProbeCollected(t *testing.T) {
	f := setup(t)
	o := f.cfg(IsolationSchema)
	o.Instance = "ci"
	o.Owner = OwnerCLI // even when `previewd db check` made it
	cli := f.provider(o)
	k := probeKeyPrefix + "0a1b2c3d"
	n := mustName(t, k)
	if err := cli.ensureSchemaMarked(f.ctx, k, n, mark{key: k, instance: "ci"}.String()); err != nil {
		t.Fatal(err)
	}
	o.Owner = ""
	removed, err := f.provider(o).Collect(f.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.exists("role", n) || f.exists("schema", n) {
		t.Fatalf("probe left after Collect (removed %v)", removed)
	}
}
