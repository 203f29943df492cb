package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/demo"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/pgtest"
)

// BenchmarkPushToReady measures, for the prebuilt example app on the local
// runtime with SQLite, the time from a sync after a branch push to the
// environment being ready (checkout, database, migrate, start, health),
// and the time from a sync after the branch's deletion to the environment
// being gone (process stopped, files and database removed).
//
//	go test -run '^$' -bench PushToReady -benchtime 30x ./internal/e2e/
func BenchmarkPushToReady(b *testing.B) {
	app, _ := binaries(b)
	r := newRepo(b)
	r.commit("main", nil)
	in := start(b, configYAML(b.TempDir(), r.bare, app, ""))
	st := in.d.Store()
	ctx := context.Background()
	wait := func(cond func() bool) time.Duration {
		t0 := time.Now()
		for !cond() {
			if time.Since(t0) > time.Minute {
				b.Fatal("timed out")
			}
			time.Sleep(200 * time.Microsecond)
		}
		return time.Since(t0)
	}
	wait(func() bool { e, err := st.Get(ctx, "production"); return err == nil && e.Status == env.StatusReady })

	var ready, gone []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		branch := fmt.Sprintf("bench-%d", i)
		sha := r.commit(branch, map[string]string{"banner.txt": branch})
		b.StartTimer()
		t0 := time.Now()
		in.d.Resync()
		wait(func() bool {
			e, err := st.Get(ctx, branch)
			return err == nil && e.Status == env.StatusReady && e.SHA == sha
		})
		ready = append(ready, time.Since(t0))
		b.StopTimer()
		r.deleteBranch(branch)
		b.StartTimer()
		t0 = time.Now()
		in.d.Resync()
		wait(func() bool {
			e, err := st.Get(ctx, branch)
			return err == nil && e.DeletedAt != nil
		})
		gone = append(gone, time.Since(t0))
	}
	b.StopTimer()
	report(b, "ready", ready)
	report(b, "teardown", gone)
}

func report(b *testing.B, name string, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) float64 { return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), name+"-p50-ms")
	b.ReportMetric(q(0.9), name+"-p90-ms")
	b.ReportMetric(q(1), name+"-max-ms")
}

// BenchmarkDBCreateProcess measures `previewd db create` as a whole
// process (start, config, connect, role + schema + grants, print) against
// a real PostgreSQL, the shape a CI pipeline uses; and `previewd db drop`.
//
//	go test -run '^$' -bench DBCreateProcess -benchtime 30x ./internal/e2e/
func BenchmarkDBCreateProcess(b *testing.B) {
	pg := pgtest.Shared(b)
	_, previewd := binaries(b)
	db := pg.NewDatabase(b)
	cfg := filepath.Join(b.TempDir(), "previewd.yaml")
	yaml := fmt.Sprintf("dataDir: %q\nforge: {git: {url: /nonexistent}}\ndatabase:\n  kind: postgres\n  postgres: {adminURL: %q, passwordSecret: bench-secret}\n", b.TempDir(), pg.AdminURLFor(db))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	run := func(args ...string) time.Duration {
		t0 := time.Now()
		out, err := exec.Command(previewd, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("previewd %v: %v\n%s", args, err, out)
		}
		return time.Since(t0)
	}
	var create, drop []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := fmt.Sprintf("pr-%d", 1000+i)
		create = append(create, run("db", "create", "--config", cfg, "--key", key))
		drop = append(drop, run("db", "drop", "--config", cfg, "--key", key))
	}
	b.StopTimer()
	report(b, "create", create)
	report(b, "drop", drop)
}

// urlReady is a "PR opened → URL ready" bench: previewd in-process on a
// real app, with the timer from the forge event to the preview's URL
// answering 200 through the proxy at the event's SHA.
type urlReady struct {
	b      *testing.B
	in     *instance
	r      *repo
	client *http.Client
	n      int
}

// event makes a commit on branch (files changed), syncs as a webhook
// would and returns the time until the preview at that commit answers.
func (u *urlReady) event(branch string, files map[string]string) time.Duration {
	u.b.Helper()
	sha := u.r.commit(branch, files)
	t0 := time.Now()
	u.in.d.Resync()
	for !u.answers(branch, sha) {
		if time.Since(t0) > 5*time.Minute {
			e, _ := u.in.d.Store().Get(context.Background(), branch)
			u.b.Fatalf("%s at %s did not answer: %s %s", branch, env.ShortSHA(sha), e.Status, e.Message)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(t0)
	// Untimed: the rollout finishes (the version before stops) before
	// the next event, so each event starts from a settled preview.
	for {
		e, err := u.in.d.Store().Get(context.Background(), branch)
		if err == nil && e.Status == env.StatusReady && e.SHA == sha {
			return d
		}
		if time.Since(t0) > 6*time.Minute {
			u.b.Fatalf("%s at %s answers but is not ready: %s %s", branch, env.ShortSHA(sha), e.Status, e.Message)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// answers reports whether key's /healthz answers 200 at sha through the
// proxy (the app's own answer: its body names the SHA).
func (u *urlReady) answers(key, sha string) bool {
	req, _ := http.NewRequest("GET", u.in.base+"/healthz", nil)
	req.Host = key + ".preview.test"
	resp, err := u.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(body), sha)
}

// remove deletes branch and waits for its environment to be gone
// (untimed: it keeps the number of running previews at one).
func (u *urlReady) remove(branch string) {
	u.b.Helper()
	u.r.deleteBranch(branch)
	u.in.d.Resync()
	ctx := context.Background()
	t0 := time.Now()
	for {
		e, err := u.in.d.Store().Get(ctx, branch)
		if err == nil && e.DeletedAt != nil {
			return
		}
		if time.Since(t0) > time.Minute {
			u.b.Fatalf("%s not removed: %s", branch, e.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// opened runs b.N new pull requests (a branch with one new commit each,
// changing file), each timed to its URL answering and then removed;
// before runs ahead of each, untimed.
func (u *urlReady) opened(b *testing.B, file string, before func()) {
	u.b = b
	var ds []time.Duration
	for i := 0; i < b.N; i++ {
		if before != nil {
			before()
		}
		u.n++
		branch := fmt.Sprintf("open-%d", u.n)
		ds = append(ds, u.event(branch, map[string]string{file: fmt.Sprintf("change %d\n", u.n)}))
		u.remove(branch)
	}
	report(b, "ready", ds)
}

// pushed runs b.N pushes to one open pull request, each a new commit
// changing file (edit gives its content), timed to the URL answering at
// the new commit.
func (u *urlReady) pushed(b *testing.B, file string, edit func(i int) string) {
	u.b = b
	u.n++
	branch := fmt.Sprintf("open-%d", u.n)
	u.event(branch, map[string]string{file: edit(0)})
	var ds []time.Duration
	for i := 1; i <= b.N; i++ {
		ds = append(ds, u.event(branch, map[string]string{file: edit(i)}))
	}
	report(b, "ready", ds)
	u.remove(branch)
}

// BenchmarkPROpenedNode measures "PR opened → URL ready" for the Node
// example (examples/node-notes, its own previewd.yaml: npm ci into a
// cache per lockfile, a web and a worker process, PostgreSQL through
// PgBouncer): from the sync after a new branch's push to its URL
// answering 200 through the proxy, with the cache entry made (warm) and
// with the cache directory emptied first (cold); and a push to an open PR
// that changes server.js only.
//
//	go test -run '^$' -bench PROpenedNode -benchtime 7x ./internal/e2e/
func BenchmarkPROpenedNode(b *testing.B) {
	needNode(b)
	pg := pgtest.Shared(b)
	b.Setenv("HOME", b.TempDir()) // an empty npm cache ($HOME/.npm)
	files := nodeExampleFiles(b)
	r := newRepo(b)
	r.commit("main", files)
	dataDir := b.TempDir()
	in := start(b, nodeConfig(b, files, dataDir, r.bare, pg.AdminURLFor(pg.NewDatabase(b)), pg.BouncerHostPort()))
	u := &urlReady{b: b, in: in, r: r, client: &http.Client{Timeout: 5 * time.Second}}
	in.api().waitStatus("production", env.StatusReady, "")
	b.Run("warm", func(b *testing.B) { u.opened(b, "NOTES.md", nil) })
	b.Run("cold", func(b *testing.B) {
		u.opened(b, "NOTES.md", func() {
			if err := os.RemoveAll(filepath.Join(dataDir, "caches", "deps")); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("push", func(b *testing.B) {
		u.pushed(b, "server.js", func(i int) string { return files["server.js"] + fmt.Sprintf("// push %d\n", i) })
	})
}

// goRecipe is README's Go recipe ("Recipes", "Go"), as written there, for
// the Go example (the markdown-editor, as `previewd demo` writes it into
// a repository of its own).
const goRecipe = `dataDir: .previewd
forge:
  kind: git
  git: {url: "${REPO}", pollInterval: 5s, productionBranch: main}
runtime:
  kind: local
  local:
    build: go build -trimpath -ldflags="-s -w" -o server .
    outputs: [server]
    run: ./server serve
    healthPath: /healthz
database:
  kind: postgres
  postgres: {adminURL: "${ADMIN_URL}"}
migrate: ./server migrate
`

// goPlainBuild is the demo's build, to compare: without -trimpath Go's
// build cache keys hold the checkout's directory, so every new checkout
// compiles the app's own packages again, and the link writes DWARF.
const goPlainBuild = "go build -o server ."

// goExampleYAML is goRecipe with what differs per machine changed, as
// nodeConfig does, and build if not "".
func goExampleYAML(t testing.TB, dataDir, repoURL, build, adminURL, appHost string) string {
	t.Helper()
	y := goRecipe
	if build != "" {
		y = replaceOnce(t, y, `build: go build -trimpath -ldflags="-s -w" -o server .`, "build: "+build)
	}
	return nodeConfig(t, map[string]string{"previewd.yaml": y}, dataDir, repoURL, adminURL, appHost)
}

// BenchmarkPROpenedGo is BenchmarkPROpenedNode for the Go example: a new
// PR whose commit changes banner.txt (so its tree was never built: `go
// build` runs, on Go's warm build cache), and a push that changes
// banner.txt again; with the recipe's build and with a plain `go build -o
// server .` (the demo's).
//
//	go test -run '^$' -bench PROpenedGo -benchtime 7x ./internal/e2e/
func BenchmarkPROpenedGo(b *testing.B) {
	pg := pgtest.Shared(b)
	for _, v := range []struct{ name, build string }{{"recipe", ""}, {"plain", goPlainBuild}} {
		dir := b.TempDir()
		bare, work, err := demo.MakeRepo(context.Background(), dir)
		if err != nil {
			b.Fatal(err)
		}
		r := &repo{t: b, bare: bare, work: work}
		for br := range demo.Branches {
			r.deleteBranch(br)
		}
		in := start(b, goExampleYAML(b, b.TempDir(), bare, v.build, pg.AdminURLFor(pg.NewDatabase(b)), pg.BouncerHostPort()))
		u := &urlReady{b: b, in: in, r: r, client: &http.Client{Timeout: 5 * time.Second}}
		// Production's build may compile everything (a build cache cold
		// for these flags): untimed, and allowed minutes.
		t0 := time.Now()
		for {
			e, err := in.d.Store().Get(context.Background(), "production")
			if err == nil && e.Status == env.StatusReady {
				break
			}
			if time.Since(t0) > 10*time.Minute {
				b.Fatalf("production is not ready: %s %s", e.Status, e.Message)
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.Run(v.name+"/warm", func(b *testing.B) { u.opened(b, "banner.txt", nil) })
		b.Run(v.name+"/push", func(b *testing.B) {
			u.pushed(b, "banner.txt", func(i int) string { return fmt.Sprintf("push %d\n", i) })
		})
		in.stop()
	}
}

// BenchmarkPROpenedGoCold is BenchmarkPROpenedGo's recipe with Go's build
// cache empty for each new PR (GOCACHE a new directory; the module cache
// stays, as on any machine that built the app once): `go build` compiles
// the standard library, the modules and the app.
//
//	go test -run '^$' -bench PROpenedGoCold -benchtime 1x ./internal/e2e/
func BenchmarkPROpenedGoCold(b *testing.B) {
	pg := pgtest.Shared(b)
	bare, work, err := demo.MakeRepo(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r := &repo{t: b, bare: bare, work: work}
	for br := range demo.Branches {
		r.deleteBranch(br)
	}
	in := start(b, goExampleYAML(b, b.TempDir(), bare, "", pg.AdminURLFor(pg.NewDatabase(b)), pg.BouncerHostPort()))
	u := &urlReady{b: b, in: in, r: r, client: &http.Client{Timeout: 5 * time.Second}}
	t0 := time.Now()
	for {
		e, err := in.d.Store().Get(context.Background(), "production")
		if err == nil && e.Status == env.StatusReady {
			break
		}
		if time.Since(t0) > 10*time.Minute {
			b.Fatalf("production is not ready: %s %s", e.Status, e.Message)
		}
		time.Sleep(20 * time.Millisecond)
	}
	u.opened(b, "banner.txt", func() { b.Setenv("GOCACHE", b.TempDir()) })
}
