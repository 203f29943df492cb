package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/previewd/previewd/internal/config"
)

// TestPreviewWiring: previews.access guards the daemon's preview hosts
// and its forward-auth endpoint, with the bypass token from the config.
func TestPreviewWiring(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	vars := map[string]string{"PW": "a-long-preview-password", "BYPASS": "bypass-0123456789abcdef0123"}
	cfg, err := config.Parse([]byte("forge: {git: {url: "+dir+", pollInterval: 1h}}\ndatabase: {kind: none}\ndomain: preview.test\n"+
		"previews: {access: password, password: \"${PW}\", bypassToken: \"${BYPASS}\"}\n"), dir,
		func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(dir, "data")
	d, err := New(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	get := func(host, path string, hdr map[string]string) int {
		r := httptest.NewRequest("GET", path, nil)
		r.Host = host
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		d.Handler().ServeHTTP(w, r)
		return w.Code
	}
	bypass := map[string]string{"X-Previewd-Bypass": vars["BYPASS"]}
	if c := get("pr-1.preview.test", "/", nil); c != http.StatusUnauthorized {
		t.Errorf("preview without credentials: %d, want 401", c)
	}
	if c := get("pr-1.preview.test", "/", bypass); c != http.StatusNotFound {
		t.Errorf("preview with the bypass token: %d, want 404 (through the guard, nothing there)", c)
	}
	if c := get("production.preview.test", "/", nil); c != http.StatusNotFound {
		t.Errorf("production: %d, want 404 (public, nothing there)", c)
	}
	fa := map[string]string{"X-Forwarded-Host": "pr-1.preview.test"}
	if c := get("previewd.test", "/auth/preview", fa); c != http.StatusUnauthorized {
		t.Errorf("forward-auth without credentials: %d, want 401", c)
	}
	fa["X-Previewd-Bypass"] = vars["BYPASS"]
	if c := get("previewd.test", "/auth/preview", fa); c != http.StatusOK {
		t.Errorf("forward-auth with the bypass token: %d, want 200", c)
	}
}
