package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"

	"github.com/previewd/previewd/internal/testsvc"
)

func headless(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, testsvc.Chromium(t), append(base, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

// TestDashboardInBrowser renders the dashboard in headless Chromium and
// checks what a person would see: one row per environment with its status,
// branch, short SHA and link.
func TestDashboardInBrowser(t *testing.T) {
	testsvc.Chromium(t)
	app, _ := binaries(t)
	r := newRepo(t)
	mainSHA := r.commit("main", nil)
	r.commit("feature/checkout", map[string]string{"BREAK": "1"})
	yaml := configYAML(t.TempDir(), r.bare, app, "")
	yaml = strings.Replace(yaml, "    run:", "    build: 'if [ -f BREAK ]; then echo \"boom: checkout.go:3\"; exit 1; fi'\n    run:", 1)
	in := start(t, yaml)
	a := in.api()
	a.waitStatus("production", env.StatusReady, mainSHA)
	fkey := env.BranchKey("feature/checkout")
	a.waitStatus(fkey, env.StatusFailed, "")

	dom := headless(t, "--dump-dom", in.base+"/")
	for _, want := range []string{
		`data-key="production"`, `badge s-ready`, env.ShortSHA(mainSHA), `href="http://production.preview.test:8080"`,
		`data-key="` + fkey + `"`, `badge s-failed`, `feature/checkout`, `build of`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard DOM lacks %q", want)
		}
	}
	if n := strings.Count(dom, "<tr data-key="); n != 2 {
		t.Errorf("dashboard shows %d rows, want 2", n)
	}
	detail := headless(t, "--dump-dom", in.base+"/environments/"+fkey)
	if !strings.Contains(detail, "boom: checkout.go:3") || !strings.Contains(detail, "Building") {
		t.Errorf("environment page lacks the log tail or history")
	}
	if shot := os.Getenv("PREVIEWD_SCREENSHOT_DIR"); shot != "" {
		headless(t, "--window-size=1280,500", "--screenshot="+filepath.Join(shot, "dashboard.png"), in.base+"/")
	}
}
