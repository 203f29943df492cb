package cli

import (
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/pgtest"
)

// TestDBCheck runs `previewd db check` against a real PostgreSQL, directly
// and through PgBouncer in transaction mode without a reset query (which
// leaks session state: exit 1 with the fix), and with sqlite.
func TestDBCheck(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)
	t.Setenv("PGCHECK_ADMIN", c.AdminURLFor(db))
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		appHost string
		code    int
		want    string
	}{
		"direct":    {c.HostPort(), 0, "ok: " + c.HostPort() + ": direct connection, no pooler"},
		"pgbouncer": {c.BouncerHostPort(), 1, "server_reset_query_always = 1"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := writeConfig(t, "dataDir: "+dir+"\nforge: {git: {url: /tmp/repo}}\n"+
				"database: {kind: postgres, postgres: {adminURL: '${PGCHECK_ADMIN}', appHost: '"+tc.appHost+"', passwordSecret: check-secret}}\n")
			code, out, errs := run(t, "db", "check", "--config", cfg)
			if code != tc.code || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d, out %q, err %q; want exit %d and %q", code, out, errs, tc.code, tc.want)
			}
		})
	}
	cfg := writeConfig(t, "dataDir: "+dir+"\nforge: {git: {url: /tmp/repo}}\n")
	if code, out, errs := run(t, "db", "check", "--config", cfg); code != 0 || !strings.Contains(out, "nothing to check") {
		t.Fatalf("sqlite: exit %d, out %q, err %q", code, out, errs)
	}
}
