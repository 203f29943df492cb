package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/pgtest"
)

// nodeExampleDir is the Node example, relative to the module root.
const nodeExampleDir = "examples/node-notes"

// needNode skips the test where node or npm is missing, as the PostgreSQL
// tests skip where the servers are: a failure in CI, which installs them
// (scripts/install-test-deps.sh).
func needNode(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if pgtest.InCI() {
				t.Fatalf("%s is not installed (scripts/install-test-deps.sh installs it)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

// nodeExampleFiles reads the Node example's files (not a node_modules or
// a data dir left by running it by hand), to commit at a repository's root.
func nodeExampleFiles(t testing.TB) map[string]string {
	t.Helper()
	root := filepath.Join(moduleRoot(), nodeExampleDir)
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".previewd") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files["package-lock.json"] == "" || files["previewd.yaml"] == "" {
		t.Fatalf("%s lacks package-lock.json or previewd.yaml", nodeExampleDir)
	}
	return files
}

// replaceOnce replaces old in s, failing the test unless it occurs exactly
// once: the example's config changed and the test must follow.
func replaceOnce(t testing.TB, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("%q occurs %d times in the example's config, want 1", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// nodeConfig is the example's own previewd.yaml with only what differs
// per machine changed: the repository, the data dir, the admin URL, the
// PgBouncer the apps reach PostgreSQL through, and the tests' domain.
func nodeConfig(t testing.TB, files map[string]string, dataDir, repoURL, adminURL, appHost string) string {
	t.Helper()
	y := files["previewd.yaml"]
	y = replaceOnce(t, y, "dataDir: .previewd\n", fmt.Sprintf("dataDir: %q\ndomain: preview.test\n", dataDir))
	y = replaceOnce(t, y, `"${REPO}"`, fmt.Sprintf("%q", repoURL))
	y = replaceOnce(t, y, `adminURL: "${ADMIN_URL}"`, fmt.Sprintf("adminURL: %q, appHost: %q", adminURL, appHost))
	return y
}

// cacheEntries counts the complete dependency cache entries under dataDir.
func cacheEntries(t testing.TB, dataDir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "caches", "deps"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// logs returns the last lines of key's log through the API.
func (a *api) logs(key string) string {
	a.t.Helper()
	resp, err := a.client.Get(a.base + "/api/v1/environments/" + key + "/logs?lines=1000")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("logs of %s: %s: %s", key, resp.Status, b)
	}
	return string(b)
}

// npmRuns counts the cache step headers that ran npm (not reused) in log.
func npmRuns(log string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "==> cache node_modules ") && strings.HasSuffix(l, ": npm ci --offline") {
			n++
		}
	}
	return n
}

type nodeDoc struct {
	ID         int     `json:"id"`
	Title      string  `json:"title"`
	HTML       *string `json:"html"`
	Words      *int    `json:"words"`
	RenderedAt *string `json:"renderedAt"`
}

// TestNodeExample runs examples/node-notes with its own previewd.yaml:
// real git, real npm (offline, with an empty npm cache: the dependencies
// are tarballs in the example), two processes per environment, PostgreSQL
// through PgBouncer. Production and two branches with the same lockfile
// share one cache entry (npm ran once), each serves its own schema through
// the proxy, the worker renders what the web process stored (its tagged
// lines in the API's logs), and a branch with another lockfile gets an
// entry of its own.
// nodeRuns counts TestNodeExample's runs in this process.
var nodeRuns atomic.Int64

func TestNodeExample(t *testing.T) {
	needNode(t)
	pg := pgtest.Shared(t)
	// Branch names of this run's own: roles are the cluster's, and a
	// second run (-count) is another previewd instance, which must not
	// meet the first one's.
	run := nodeRuns.Add(1)
	na, nb, nc := fmt.Sprintf("notes%d-a", run), fmt.Sprintf("notes%d-b", run), fmt.Sprintf("notes%d-c", run)
	// An empty npm cache: previewd passes HOME (not npm_config_cache) on
	// to its steps, and npm keeps its cache in $HOME/.npm.
	t.Setenv("HOME", t.TempDir())
	files := nodeExampleFiles(t)
	r := newRepo(t)
	r.commit("main", files)
	shas := map[string]string{}
	for _, b := range []string{na, nb} {
		shas[b] = r.commit(b, map[string]string{"NOTES.md": "branch " + b + "\n"})
	}
	dataDir := t.TempDir()
	in := start(t, nodeConfig(t, files, dataDir, r.bare, pg.AdminURLFor(pg.NewDatabase(t)), pg.BouncerHostPort()))
	a := in.api()
	a.waitStatus("production", env.StatusReady, "")
	for b, sha := range shas {
		a.waitStatus(b, env.StatusReady, sha)
	}

	// One entry, made once, used by all three.
	if n := cacheEntries(t, dataDir); n != 1 {
		t.Errorf("%d cache entries for one lockfile, want 1", n)
	}
	runs, reused := 0, 0
	for _, k := range []string{"production", na, nb} {
		log := a.logs(k)
		runs += npmRuns(log)
		if strings.Contains(log, "==> cache node_modules ") && strings.Contains(log, " reused") {
			reused++
		}
	}
	if runs != 1 || reused != 2 {
		t.Errorf("npm ci ran %d times and the entry was reused by %d, want 1 and 2", runs, reused)
	}

	// Each branch serves from its own schema, through the proxy.
	for b, sha := range shas {
		code, body := a.preview(b, "GET", "/healthz", "")
		var h struct{ Status, SHA, Key, Schema string }
		json.Unmarshal([]byte(body), &h)
		if code != http.StatusOK || h.SHA != sha || h.Key != b || h.Schema != "preview_"+strings.ReplaceAll(b, "-", "_") {
			t.Errorf("%s healthz: %d %s", b, code, body)
		}
	}

	// A document made through web is rendered by worker, in its branch only.
	ids := map[string]int{}
	for _, b := range []string{na, nb} {
		code, body := a.preview(b, "POST", "/api/documents", fmt.Sprintf(`{"title":"only in %s","content":"# Hello %s\n\nfour words *right* here"}`, b, b))
		var d nodeDoc
		if err := json.Unmarshal([]byte(body), &d); code != http.StatusCreated || err != nil {
			t.Fatalf("create in %s: %d %s", b, code, body)
		}
		ids[b] = d.ID
	}
	for b, id := range ids {
		var d nodeDoc
		eventually(t, 20*time.Second, func() string {
			code, body := a.preview(b, "GET", fmt.Sprintf("/api/documents/%d", id), "")
			d = nodeDoc{}
			json.Unmarshal([]byte(body), &d)
			if code != http.StatusOK || d.RenderedAt == nil {
				return fmt.Sprintf("%s's document not rendered yet: %d %s", b, code, body)
			}
			return ""
		})
		if d.HTML == nil || !strings.Contains(*d.HTML, "<h1>Hello "+b+"</h1>") || !strings.Contains(*d.HTML, "<em>right</em>") || d.Words == nil || *d.Words != 6 {
			t.Errorf("%s's document as the worker rendered it: %+v", b, d)
		}
		want := fmt.Sprintf(`[worker] rendered document %d "only in %s": 6 words`, id, b)
		eventually(t, 30*time.Second, func() string {
			if log := a.logs(b); !strings.Contains(log, want) {
				return fmt.Sprintf("no %q in %s's log:\n%s", want, b, log)
			}
			return ""
		})
		if code, page := a.preview(b, "GET", fmt.Sprintf("/documents/%d", id), ""); code != http.StatusOK || !strings.Contains(page, "<h1>Hello "+b+"</h1>") {
			t.Errorf("%s's page: %d %s", b, code, page)
		}
		if code, page := a.preview(b, "GET", "/", ""); code != http.StatusOK || !strings.Contains(page, ">only in "+b+"</a> (6 words)") {
			t.Errorf("%s's list page: %d %s", b, code, page)
		}
	}
	for _, k := range []string{"production", na, nb} {
		code, list := a.preview(k, "GET", "/api/documents", "")
		if code != http.StatusOK {
			t.Fatalf("%s's list: %d %s", k, code, list)
		}
		for _, b := range []string{na, nb} {
			if got, want := strings.Contains(list, "only in "+b), k == b; got != want {
				t.Errorf("%s lists %q: %v, want %v: %s", k, "only in "+b, got, want, list)
			}
		}
	}

	// Another lockfile (the app's version changed in package.json and
	// package-lock.json): an entry of its own, npm run for it.
	bump := func(s string) string {
		return strings.Replace(s, `"name": "node-notes",
  "version": "1.0.0"`, `"name": "node-notes",
  "version": "1.1.0"`, 1)
	}
	lock := bump(files["package-lock.json"])
	lock = strings.Replace(lock, `"": {
      "name": "node-notes",
      "version": "1.0.0"`, `"": {
      "name": "node-notes",
      "version": "1.1.0"`, 1)
	if strings.Count(lock, `"version": "1.1.0"`)-strings.Count(files["package-lock.json"], `"version": "1.1.0"`) != 2 {
		t.Fatalf("package-lock.json's version was not bumped twice:\n%s", lock[:300])
	}
	shaC := r.commit(nc, map[string]string{"package.json": bump(files["package.json"]), "package-lock.json": lock})
	in.sync()
	a.waitStatus(nc, env.StatusReady, shaC)
	if n := cacheEntries(t, dataDir); n != 2 {
		t.Errorf("%d cache entries for two lockfiles, want 2", n)
	}
	if n := npmRuns(a.logs(nc)); n != 1 {
		t.Errorf("npm ci ran %d times for the new lockfile, want 1", n)
	}
	if code, body := a.preview(nc, "GET", "/api/documents", ""); code != http.StatusOK || strings.Contains(body, "only in") {
		t.Errorf("notes-c's list: %d %s", code, body)
	}
}

// TestRecipesAsWritten: README's Node and Go recipes are the configs the
// tests and benchmarks run (examples/node-notes/previewd.yaml, goRecipe),
// character for character.
func TestRecipesAsWritten(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(moduleRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	node := nodeExampleFiles(t)["previewd.yaml"]
	for name, y := range map[string]string{"Node": node, "Go": goRecipe} {
		if !strings.Contains(string(readme), "```yaml\n"+y+"```\n") {
			t.Errorf("README's %s recipe is not, as a yaml block, the config the tests run:\n%s", name, y)
		}
	}
}
