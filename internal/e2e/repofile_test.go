package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestRepoFileAndPathFilters runs previewd with the git forge and the
// local runtime on a real repository whose .previewd.yaml chooses the run
// command (previewd's own config has one that fails) and path filters:
// each commit runs with its own file's command, a branch touching only
// docs gets no environment and says why, a later docs-only push keeps
// what runs at its commit, and a bad file fails only its branch, naming
// the field.
func TestRepoFileAndPathFilters(t *testing.T) {
	app, _ := binaries(t)
	r := newRepo(t)
	file := func(banner string) string {
		return fmt.Sprintf("runtime:\n  local:\n    run: \"APP_BANNER='%s' exec %s serve\"\npaths: [apps/web/**, packages/ui/**]\n", banner, app)
	}
	mainSHA := r.commit("main", map[string]string{".previewd.yaml": file("from main"), "apps/web/index.txt": "web"})
	webSHA := r.commit("web", map[string]string{".previewd.yaml": file("from web"), "apps/web/x.go": "package web"})
	r.commit("docs", map[string]string{"docs/guide.md": "# guide"})
	r.commit("bad", map[string]string{".previewd.yaml": "runtime: {local: {env: {TOKEN: x}}}\n", "apps/web/y.go": "package web"})
	r.commit("typo", map[string]string{".previewd.yaml": "runtime: {local: {rnu: ./app}}\n", "apps/web/z.go": "package web"})
	dataDir := t.TempDir()
	in := start(t, configYAMLRun(dataDir, r.bare, app, "exit 3", ""))
	a := in.api()

	a.waitStatus("production", env.StatusReady, mainSHA)
	a.waitStatus("web", env.StatusReady, webSHA)
	for key, banner := range map[string]string{"production": "from main", "web": "from web"} {
		if h, code := a.health(key); code != http.StatusOK || h.Banner != banner {
			t.Errorf("%s healthz = %d %+v, want the banner %q of its own commit's run", key, code, h, banner)
		}
	}

	// docs touches none of the filters: no environment, and why.
	d := a.waitStatus("docs", env.StatusPending, "")
	if want := "no changes under apps/web/**, packages/ui/**; not deployed"; d.Message != want {
		t.Errorf("docs says %q, want %q", d.Message, want)
	}
	if len(appPIDs(dataDir, "docs")) != 0 {
		t.Error("docs runs a process")
	}
	if code, _ := a.preview("docs", "GET", "/healthz", ""); code == http.StatusOK {
		t.Error("docs is served")
	}

	// A bad file fails its branch only, naming the field.
	for key, want := range map[string]string{
		"bad":  "runtime.local.env is not allowed in .previewd.yaml: secrets stay in previewd's config",
		"typo": "runtime.local.rnu: unknown key in .previewd.yaml",
	} {
		e := a.waitStatus(key, env.StatusFailed, "")
		if !strings.Contains(e.Message, want) {
			t.Errorf("%s failed with %q, want it to say %q", key, e.Message, want)
		}
	}

	// A docs-only push to web keeps what runs at its commit.
	pids := appPIDs(dataDir, "web")
	web2 := r.commit("web", map[string]string{"docs/web.md": "notes"})
	in.sync()
	want := fmt.Sprintf("no changes under apps/web/**, packages/ui/** in %s; still serving %s", env.ShortSHA(web2), env.ShortSHA(webSHA))
	eventually(t, 30*time.Second, func() string {
		e, _ := a.environment("web")
		if e.Message != want || e.Status != env.StatusReady || e.SHA != webSHA {
			return fmt.Sprintf("web is %s at %s: %q (events %+v)", e.Status, env.ShortSHA(e.SHA), e.Message, e.Events)
		}
		return ""
	})
	if h, code := a.health("web"); code != http.StatusOK || h.SHA != webSHA || h.Banner != "from web" {
		t.Errorf("web healthz after the docs push = %d %+v", code, h)
	}
	if now := appPIDs(dataDir, "web"); fmt.Sprint(now) != fmt.Sprint(pids) {
		t.Errorf("web's processes changed on a docs-only push: %v -> %v", pids, now)
	}

	// A push touching a filter deploys docs, with main's file (it
	// branched from main).
	docs2 := r.commit("docs", map[string]string{"packages/ui/button.tsx": "x"})
	in.sync()
	a.waitStatus("docs", env.StatusReady, docs2)
	if h, code := a.health("docs"); code != http.StatusOK || h.Banner != "from main" {
		t.Errorf("docs healthz = %d %+v", code, h)
	}
}
