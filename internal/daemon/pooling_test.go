package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestLogPoolingCheck: serve's start check logs a leak through PgBouncer
// (transaction mode, no reset query) as a warning with the fix, and says
// nothing for a provider without the check.
func TestLogPoolingCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := pgtest.Shared(t)
	db := c.NewDatabase(t)
	dir := t.TempDir()
	yaml := fmt.Sprintf("forge: {git: {url: %s}}\ndatabase: {kind: postgres, postgres: {adminURL: '${ADMIN_URL}', appHost: '%s'}}\n",
		filepath.Join(dir, "repo"), c.BouncerHostPort())
	vars := map[string]string{"ADMIN_URL": c.AdminURLFor(db)}
	cfg, err := config.Parse([]byte(yaml), dir, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenDatabase(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.(interface{ Close() }).Close()
	var buf bytes.Buffer
	LogPoolingCheck(ctx, p, slog.New(slog.NewTextHandler(&buf, nil)))
	if out := buf.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "server_reset_query_always = 1") {
		t.Fatalf("log %q; want a warning with the fix", out)
	}
	buf.Reset()
	LogPoolingCheck(ctx, database.None{}, slog.New(slog.NewTextHandler(&buf, nil)))
	if buf.Len() != 0 {
		t.Fatalf("log for no database: %q", buf.String())
	}
}
