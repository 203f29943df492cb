package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/pgtest"
)

// TestServeRefusesOpenListen: serve (and validate) refuse a listen address
// reachable from other machines without an auth section, exit 1 and name
// auth; on loopback, or with auth.anonymous set on purpose, serve runs.
func TestServeRefusesOpenListen(t *testing.T) {
	for _, listen := range []string{":8080", "0.0.0.0:8080", "[::]:8080"} {
		cfg := writeConfig(t, "listen: \""+listen+"\"\ndataDir: "+t.TempDir()+"\nforge: {git: {url: /tmp/repo}}\n")
		for _, cmd := range []string{"serve", "validate"} {
			code, _, errs := run(t, cmd, "--config", cfg)
			if code != 1 || !strings.Contains(errs, "auth: required") || !strings.Contains(errs, "auth.anonymous") {
				t.Errorf("%s on %s: exit %d, stderr %q; want 1 naming auth", cmd, listen, code, errs)
			}
		}
	}
	for name, body := range map[string]string{
		"loopback":         `listen: "127.0.0.1:0"`,
		"anonymous viewer": "listen: \"0.0.0.0:0\"\nauth: {anonymous: viewer}",
		"tokens":           "listen: \":0\"\nauth: {tokens: [{name: ci, token: ci-0123456789abcdef, role: admin}]}",
	} {
		t.Run(name, func(t *testing.T) {
			cfg := writeConfig(t, body+"\ndataDir: "+t.TempDir()+"\nforge: {git: {url: /tmp/repo}}\ndatabase: {kind: none}\n")
			if code, out, errs := run(t, "validate", "--config", cfg); code != 0 {
				t.Errorf("validate: exit %d, %q %q", code, out, errs)
			}
			// serve runs until its context ends, then exits 0.
			if code, errs := serveUntil(t, cfg, "msg=serving"); code != 0 || !strings.Contains(errs, "msg=serving") {
				t.Errorf("serve: exit %d, stderr %q", code, errs)
			}
		})
	}
}

// serveUntil runs serve on cfg until its log has all of wants (or it
// exits), at most a minute, then ends its context and returns its exit
// code and log. What serve logs at startup may take a while on a loaded
// machine (a PostgreSQL query runs beside the listener): a fixed run time
// would cut it off.
func serveUntil(t *testing.T, cfg string, wants ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"serve", "--config", cfg}, &out, &errb) }()
	deadline := time.After(time.Minute)
	for {
		select {
		case code := <-done:
			return code, errb.String()
		case <-deadline:
			cancel()
			return <-done, errb.String()
		case <-time.After(20 * time.Millisecond):
		}
		all := true
		for _, w := range wants {
			all = all && strings.Contains(errb.String(), w)
		}
		if all {
			cancel()
			return <-done, errb.String()
		}
	}
}

// TestLsToken: ls sends PREVIEWD_TOKEN as a bearer token.
func TestLsToken(t *testing.T) {
	const tok = "viewer-0123456789abcdef"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+tok {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"environments":[{"key":"pr-3","status":"ready"}]}`)
	}))
	defer srv.Close()
	if code, _, errs := run(t, "ls", "--server", srv.URL); code != 1 || !strings.Contains(errs, "401") {
		t.Errorf("ls without a token: %d %q", code, errs)
	}
	t.Setenv("PREVIEWD_TOKEN", tok)
	if code, out, errs := run(t, "ls", "--server", srv.URL); code != 0 || !strings.Contains(out, "pr-3") {
		t.Errorf("ls with PREVIEWD_TOKEN: %d %q %q", code, out, errs)
	}
}

// TestAdminForProduction: without database.postgres.productionURL,
// validate warns on loopback and exits 0, serve logs the warning; beyond
// loopback both refuse it (exit 1, naming the field) unless
// allowAdminForProduction; with it, serve runs.
func TestAdminForProduction(t *testing.T) {
	pg := pgtest.Shared(t)
	db := pg.NewDatabase(t)
	config := func(listen, extra string) string {
		return writeConfig(t, "listen: \""+listen+"\"\ndataDir: "+t.TempDir()+"\nforge: {git: {url: /tmp/repo}}\nauth: {anonymous: viewer}\n"+
			"database:\n  kind: postgres\n  postgres: {adminURL: '"+pg.AdminURLFor(db)+"', passwordSecret: cli-test-secret-0123456789"+extra+"}\n")
	}

	// Isolation database: serve also says, once, that preview roles may
	// CONNECT to production's database, and how to close it.
	loop := config("127.0.0.1:0", ", isolation: database")
	code, out, errs := run(t, "validate", "--config", loop)
	if code != 0 || !strings.Contains(out, "ok") || !strings.Contains(errs, "warning: database.postgres.productionURL: not set") {
		t.Errorf("validate on loopback: exit %d, %q %q; want 0 and a warning", code, out, errs)
	}
	if strings.Contains(errs, pg.Password()) {
		t.Errorf("validate repeated the admin password")
	}
	if code, errs := serveUntil(t, loop, "msg=serving", "productionURL: not set", "REVOKE CONNECT"); code != 0 || !strings.Contains(errs, "database.postgres.productionURL: not set") || !strings.Contains(errs, "msg=serving") ||
		strings.Count(errs, `REVOKE CONNECT ON DATABASE \"`+db+`\" FROM PUBLIC;`) != 1 {
		t.Errorf("serve on loopback: exit %d, %q; want it to run and log both warnings once", code, errs)
	}

	open := config("0.0.0.0:0", "")
	for _, cmd := range []string{"validate", "serve"} {
		code, _, errs := run(t, cmd, "--config", open)
		if code != 1 || !strings.Contains(errs, "database.postgres.productionURL: required") || !strings.Contains(errs, "allowAdminForProduction") {
			t.Errorf("%s beyond loopback: exit %d, %q; want 1 naming database.postgres.productionURL", cmd, code, errs)
		}
	}
	allowed := config("0.0.0.0:0", ", allowAdminForProduction: true")
	if code, out, errs := run(t, "validate", "--config", allowed); code != 0 || errs != "" {
		t.Errorf("validate allowed: exit %d, %q %q", code, out, errs)
	}
	if code, errs := serveUntil(t, allowed, "msg=serving"); code != 0 || !strings.Contains(errs, "msg=serving") || strings.Contains(errs, "productionURL") {
		t.Errorf("serve allowed: exit %d, %q", code, errs)
	}
}
