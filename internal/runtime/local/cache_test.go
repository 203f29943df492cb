package local

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/gittest"
	"github.com/previewd/previewd/internal/testsvc"
)

// testRepo is a git repository the tests commit to, on several branches.
type testRepo struct{ *gittest.Repo }

func newTestRepo(t testing.TB) *testRepo { return &testRepo{gittest.New(t)} }

// commit commits files on branch (made from main when new) and returns
// the commit.
func (r *testRepo) commit(branch string, files map[string]string) string {
	return r.CommitOn(branch, files)
}

func (r *testRepo) release(key, branch, sha string) *env.Release {
	return &env.Release{Source: env.Source{Key: key, Kind: env.KindBranch, Branch: branch, SHA: sha, Repo: r.Dir, Ref: "refs/heads/" + branch, Trusted: true}}
}

// lines counts the lines of a marker file that run commands append to.
func lines(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// entries lists the complete entries of a store.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if de.IsDir() && !strings.HasPrefix(de.Name(), ".tmp-") {
			out = append(out, de.Name())
		}
	}
	return out
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// npmPackage writes the tarball of a package with no dependencies into
// the repository (vendor/<name>-<version>.tgz), with npm pack.
func npmPackage(t testing.TB, repo *testRepo, name, version string) {
	t.Helper()
	src := t.TempDir()
	for f, c := range map[string]string{
		"package.json": `{"name":"` + name + `","version":"` + version + `","main":"index.js"}`,
		"index.js":     `module.exports = "` + name + ` ` + version + `";`,
	} {
		if err := os.WriteFile(filepath.Join(src, f), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(repo.Dir, "vendor"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("npm", "pack", "--pack-destination", filepath.Join(repo.Dir, "vendor"))
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm pack: %v\n%s", err, out)
	}
}

// npmLock writes package.json depending on vendor's tarball of dep at
// version, and its package-lock.json (npm install, offline).
func npmLock(t testing.TB, repo *testRepo, version string) {
	t.Helper()
	repo.Write("package.json", `{"name":"app","version":"1.0.0","private":true,"dependencies":{"dep":"file:vendor/dep-`+version+`.tgz"}}`)
	cmd := exec.Command("npm", "install", "--offline", "--no-audit", "--no-fund", "--package-lock-only")
	cmd.Dir = repo.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install: %v\n%s", err, out)
	}
}

// TestCacheNpmSharedByBranches: with real npm, two branches whose
// package-lock.json is the same share one entry (npm ci ran once, the
// checkouts' files are the entry's, read-only), and a third whose
// lockfile differs gets its own, with its own version of the dependency.
func TestCacheNpmSharedByBranches(t *testing.T) {
	if _, err := exec.LookPath("npm"); err != nil {
		testsvc.SkipUnlessCI(t, "no npm: %v", err)
	}
	repo := newTestRepo(t)
	npmPackage(t, repo, "dep", "1.0.0")
	npmPackage(t, repo, "dep", "1.1.0")
	npmLock(t, repo, "1.0.0")
	repo.Write(".gitignore", "node_modules/\n")
	main := repo.commit("main", nil)
	featA := repo.commit("feat-a", map[string]string{"README": "a change that is no dependency\n"})
	repo.Git("checkout", "-q", "-B", "feat-b", "main")
	npmLock(t, repo, "1.1.0")
	featB := repo.commit("feat-b", nil)
	if readFile(t, filepath.Join(repo.Dir, "package-lock.json")) == "" {
		t.Fatal("no lockfile")
	}

	marker := filepath.Join(t.TempDir(), "ran")
	r, _ := newRuntime(t, Options{
		Env: map[string]string{"npm_config_cache": t.TempDir()},
		Caching: Caching{Caches: []CacheSpec{{
			Path: "node_modules", Key: []string{"package-lock.json"},
			Run: "npm ci --offline --no-audit --no-fund && echo ran >> '" + marker + "'",
		}}},
	})
	ctx := context.Background()
	node := func(rel *env.Release) string {
		t.Helper()
		cmd := exec.Command("node", "-p", `require("dep")`)
		cmd.Dir = r.workDir(rel.Key, rel.SHA)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("node in %s: %v\n%s", rel.Key, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	relMain, relA, relB := repo.release("main", "main", main), repo.release("feat-a", "feat-a", featA), repo.release("feat-b", "feat-b", featB)
	for _, rel := range []*env.Release{relMain, relA} {
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatalf("prepare %s: %v", rel.Key, err)
		}
		if got := node(rel); got != "dep 1.0.0" {
			t.Errorf("%s requires %q, want dep 1.0.0", rel.Key, got)
		}
	}
	if n := lines(t, marker); n != 1 {
		t.Errorf("npm ci ran %d times for two branches with one lockfile, want 1", n)
	}
	if got := entries(t, r.depsDir()); len(got) != 1 {
		t.Errorf("entries after two branches with one lockfile: %v, want 1", got)
	}
	fileIn := func(rel *env.Release) os.FileInfo {
		st, err := os.Stat(filepath.Join(r.workDir(rel.Key, rel.SHA), "node_modules", "dep", "index.js"))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	a, b := fileIn(relMain), fileIn(relA)
	if errors.Is(cloneProbe(t, r.o.Dir), errNoReflink) && !os.SameFile(a, b) {
		t.Errorf("the two checkouts' node_modules/dep/index.js are not the entry's hard links")
	}
	if a.Mode().Perm()&0o222 != 0 {
		t.Errorf("a shared file is writable (%v): an app could write into the entry", a.Mode())
	}

	if err := r.Prepare(ctx, relB); err != nil {
		t.Fatal(err)
	}
	if got := node(relB); got != "dep 1.1.0" {
		t.Errorf("feat-b requires %q, want dep 1.1.0 (its own lockfile)", got)
	}
	if n := lines(t, marker); n != 2 {
		t.Errorf("npm ci ran %d times for two lockfiles, want 2", n)
	}
	if got := entries(t, r.depsDir()); len(got) != 2 {
		t.Errorf("entries after a changed lockfile: %v, want 2", got)
	}
	if got := node(relMain); got != "dep 1.0.0" {
		t.Errorf("main requires %q after feat-b, want dep 1.0.0", got)
	}
}

// cloneProbe says whether dir's filesystem makes reflinks.
func cloneProbe(t testing.TB, dir string) error {
	t.Helper()
	src := filepath.Join(dir, "probe-src")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(src)
	defer os.Remove(src + ".clone")
	return cloneFile(src, src+".clone", 0o644)
}

// TestCacheKilledMidBuild: a cache build killed with SIGKILL leaves no
// entry, and neither does a half-made entry left by a previewd that was
// killed: the next build makes a complete one and removes the leftover.
func TestCacheKilledMidBuild(t *testing.T) {
	repo := newTestRepo(t)
	sha := repo.commit("main", map[string]string{"lock.txt": "v1\n"})
	tmp := t.TempDir()
	marker, pidFile, proceed := filepath.Join(tmp, "ran"), filepath.Join(tmp, "pid"), filepath.Join(tmp, "proceed")
	spec := CacheSpec{Path: "deps", Key: []string{"lock.txt"},
		Run: "mkdir -p deps && echo partial > deps/a && if [ ! -f '" + proceed + "' ]; then echo $$ > '" + pidFile + "'; sleep 300; fi; echo whole > deps/b && echo ran >> '" + marker + "'"}
	r, _ := newRuntime(t, Options{Caching: Caching{Caches: []CacheSpec{spec}}})
	ctx := context.Background()
	rel := repo.release("main", "main", sha)
	done := make(chan error, 1)
	go func() { done <- r.Prepare(ctx, rel) }()
	pid := waitPID(t, pidFile)
	killGroup(pid, syscall.SIGKILL)
	select {
	case err := <-done:
		var se *env.StepError
		if !errors.As(err, &se) || se.Step != "cache deps" {
			t.Fatalf("prepare with its cache build killed: %v, want a StepError of step cache deps", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("prepare did not return after its cache build was killed")
	}
	if got := entries(t, r.depsDir()); len(got) != 0 {
		t.Fatalf("entries after a killed build: %v, want none", got)
	}
	// What a previewd killed between the run and the rename leaves.
	id, err := cacheKey(spec, r.workDir(rel.Key, rel.SHA), true)
	if err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(r.depsDir(), ".tmp-"+id)
	if err := os.MkdirAll(filepath.Join(half, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(half, "data", "a"), []byte("partial\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(proceed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(r.workDir(rel.Key, rel.SHA), "deps", "b")); got != "whole\n" {
		t.Errorf("deps/b after the rebuild: %q", got)
	}
	if n := lines(t, marker); n != 1 {
		t.Errorf("completed builds: %d, want 1", n)
	}
	if exists(half) {
		t.Error("the half-made entry is still there after the next build")
	}
	if got := entries(t, r.depsDir()); len(got) != 1 || got[0] != id {
		t.Errorf("entries: %v, want [%s]", got, id)
	}
}

func waitPID(t testing.TB, path string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written within 20s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCacheConcurrentBuildsOnce: environments that need the same entry at
// the same time, in two runtimes sharing one directory (as two previewd
// processes would), build it once; the others wait and use it.
func TestCacheConcurrentBuildsOnce(t *testing.T) {
	repo := newTestRepo(t)
	sha := repo.commit("main", map[string]string{"lock.txt": "v1\n"})
	warm := repo.commit("warm", map[string]string{"lock.txt": "v0\n"}) // a child of main
	marker := filepath.Join(t.TempDir(), "ran")
	o := Options{Dir: t.TempDir(), Caching: Caching{Caches: []CacheSpec{{Path: "deps", Key: []string{"lock.txt"},
		Run: "echo ran >> '" + marker + "' && mkdir -p deps && echo x > deps/x"}}}}
	r1, _ := newRuntime(t, o)
	r2, _ := newRuntime(t, o)
	ctx := context.Background()
	// The object cache (one git repository, locked within a process)
	// gets main's commit first, as a parent of warm's: the environments
	// below fetch nothing, so only the cache's lock is under test.
	if err := r1.Prepare(ctx, repo.release("warm", "warm", warm)); err != nil {
		t.Fatal(err)
	}
	if n := lines(t, marker); n != 1 {
		t.Fatalf("warm-up builds: %d", n)
	}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	rels := make([]*env.Release, 6)
	for i := range rels {
		rels[i] = repo.release("env-"+strconv.Itoa(i), "main", sha)
		rt := r1
		if i%2 == 1 {
			rt = r2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = rt.Prepare(ctx, rels[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("env-%d: %v", i, err)
			continue
		}
		if got := readFile(t, filepath.Join(r1.workDir(rels[i].Key, sha), "deps", "x")); got != "x\n" {
			t.Errorf("env-%d deps/x: %q", i, got)
		}
	}
	if n := lines(t, marker) - 1; n != 1 {
		t.Errorf("the cache was built %d times by six environments at once, want 1", n)
	}
}

// TestCacheFailureFailsOnlyItsEnvironments: a cache build that fails
// fails the environment whose key it is, as a StepError with the log's
// tail; an environment with another key is prepared.
func TestCacheFailureFailsOnlyItsEnvironments(t *testing.T) {
	repo := newTestRepo(t)
	good := repo.commit("main", map[string]string{"lock.txt": "v1\n"})
	bad := repo.commit("broken", map[string]string{"lock.txt": "broken\n"})
	r, _ := newRuntime(t, Options{Caching: Caching{Caches: []CacheSpec{{Path: "deps", Key: []string{"lock.txt"},
		Run: "if grep -q broken lock.txt; then echo 'cannot resolve dependency left-pad'; exit 3; fi; mkdir -p deps"}}}})
	ctx := context.Background()
	err := r.Prepare(ctx, repo.release("broken", "broken", bad))
	var se *env.StepError
	if !errors.As(err, &se) {
		t.Fatalf("prepare with a failing cache build: %v, want a StepError", err)
	}
	if se.Step != "cache deps" || !strings.Contains(se.Tail, "cannot resolve dependency left-pad") {
		t.Errorf("step %q, tail %q: want step cache deps and the command's output", se.Step, se.Tail)
	}
	if err := r.Prepare(ctx, repo.release("main", "main", good)); err != nil {
		t.Errorf("an environment with another key: %v", err)
	}
	if got := entries(t, r.depsDir()); len(got) != 1 {
		t.Errorf("entries: %v, want only the good one", got)
	}
}

// TestCacheEviction: entries no checkout uses go when they are older than
// cacheMaxAge, or, least recently used first, when the total is over
// cacheMaxBytes; an entry a checkout uses stays either way.
func TestCacheEviction(t *testing.T) {
	repo := newTestRepo(t)
	shas := map[string]string{}
	for _, b := range []string{"main", "a", "b", "c"} {
		shas[b] = repo.commit(b, map[string]string{"lock.txt": b + "\n"})
	}
	r, st := newRuntime(t, Options{Caching: Caching{
		Caches: []CacheSpec{{Path: "deps", Key: []string{"lock.txt"}, Run: "mkdir -p deps && head -c 1000 /dev/zero > deps/blob"}},
		MaxAge: time.Hour,
	}})
	ctx := context.Background()
	entryOf := map[string]string{}
	for _, b := range []string{"a", "b"} {
		rel := repo.release(b, b, shas[b])
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatal(err)
		}
		id, err := cacheKey(r.o.Caching.Caches[0], r.workDir(b, shas[b]), true)
		if err != nil {
			t.Fatal(err)
		}
		entryOf[b] = id
	}
	// a is torn down: its entry is used by no checkout. Both are made old.
	items, err := st.Items(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "a", items); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, id := range entryOf {
		if err := os.Chtimes(filepath.Join(r.depsDir(), id, "used"), old, old); err != nil {
			t.Fatal(err)
		}
	}
	r.evictCaches()
	if got := entries(t, r.depsDir()); len(got) != 1 || got[0] != entryOf["b"] {
		t.Errorf("entries after age eviction: %v, want only b's (in use) %s", got, entryOf["b"])
	}

	// By size: c's entry and main's fit one at a time. main is torn down,
	// so when c is made, main's goes, and b's (in use, older) stays.
	r.o.Caching.MaxAge = 0
	r.o.Caching.MaxBytes = 1500
	if err := r.Prepare(ctx, repo.release("main", "main", shas["main"])); err != nil {
		t.Fatal(err)
	}
	mainID := entries(t, r.depsDir())
	items, _ = st.Items(ctx, "main")
	if err := r.Delete(ctx, "main", items); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(ctx, repo.release("c", "c", shas["c"])); err != nil {
		t.Fatal(err)
	}
	got := entries(t, r.depsDir())
	if len(got) != 2 {
		t.Fatalf("entries after size eviction: %v (before: %v), want b's and c's", got, mainID)
	}
	for _, id := range got {
		if !exists(filepath.Join(r.depsDir(), id, "users")) || !inUse(filepath.Join(r.depsDir(), id)) {
			t.Errorf("entry %s kept but not in use", id)
		}
	}
	if !exists(filepath.Join(r.workDir("b", shas["b"]), "deps", "blob")) {
		t.Error("b's checkout lost its cache")
	}
}

// TestEvictions is the eviction decision.
func TestEvictions(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	e := func(id string, size int64, ageHours int, inUse bool) storedEntry {
		return storedEntry{ID: id, Size: size, Used: now.Add(-time.Duration(ageHours) * time.Hour), InUse: inUse}
	}
	for name, tc := range map[string]struct {
		entries  []storedEntry
		maxAge   time.Duration
		maxBytes int64
		want     string
	}{
		"nothing to do":           {[]storedEntry{e("a", 10, 1, false), e("b", 10, 2, false)}, 24 * time.Hour, 100, ""},
		"too old":                 {[]storedEntry{e("a", 10, 1, false), e("b", 10, 30, false)}, 24 * time.Hour, 100, "b"},
		"too old but in use":      {[]storedEntry{e("a", 10, 30, true)}, 24 * time.Hour, 100, ""},
		"over the cap, LRU first": {[]storedEntry{e("new", 60, 1, false), e("old", 60, 5, false), e("mid", 60, 3, false)}, 0, 110, "old mid"},
		"over the cap, in use kept": {[]storedEntry{e("new", 60, 1, false), e("old", 60, 5, true), e("mid", 60, 3, false)}, 0, 100,
			"mid new"},
		"all in use, over the cap": {[]storedEntry{e("a", 60, 1, true), e("b", 60, 5, true)}, 0, 10, ""},
		"age then size":            {[]storedEntry{e("a", 50, 1, false), e("b", 50, 2, false), e("c", 50, 40, false)}, 24 * time.Hour, 60, "c b"},
		"no limits":                {[]storedEntry{e("a", 50, 1000, false)}, 0, 0, ""},
	} {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, x := range evictions(tc.entries, now, tc.maxAge, tc.maxBytes) {
				got = append(got, x.ID)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("evicted %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
}

// TestBuildReusedAcrossBranches: a branch whose commit has the tree that
// another branch built restores that build's outputs instead of building,
// and runs the binary it did not build; its copy is its own (not a hard
// link into the kept build).
func TestBuildReusedAcrossBranches(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	repo := newTestRepo(t)
	main := repo.commit("main", map[string]string{"lock.txt": "v1\n", "main.go": "package main\n"})
	feat := repo.commit("feat", nil) // another commit, the same tree
	if main == feat {
		t.Fatal("the branches have one commit")
	}
	marker := filepath.Join(t.TempDir(), "built")
	r, _ := newRuntime(t, Options{
		Build:      "echo built >> '" + marker + "' && mkdir -p bin && cp '" + exe + "' bin/app",
		Run:        "exec ./bin/app",
		HealthPath: "/healthz", StartTimeout: 20 * time.Second,
		Env: map[string]string{"LOCAL_TEST_APP": "1"},
		Caching: Caching{
			Caches:  []CacheSpec{{Path: "deps", Key: []string{"lock.txt"}, Run: "mkdir -p deps"}},
			Outputs: []string{"bin/"},
		},
	})
	ctx := context.Background()
	relMain, relFeat := repo.release("production", "main", main), repo.release("feat", "feat", feat)
	for _, rel := range []*env.Release{relMain, relFeat} {
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatalf("prepare %s: %v", rel.Key, err)
		}
		if err := r.Deploy(ctx, rel); err != nil {
			t.Fatalf("deploy %s: %v", rel.Key, err)
		}
		t.Cleanup(func() { r.Stop(context.Background(), rel.Key) })
		if ok, _, _ := r.Running(ctx, rel.Key); !ok {
			t.Errorf("%s is not running", rel.Key)
		}
	}
	if n := lines(t, marker); n != 1 {
		t.Errorf("built %d times for two branches at one tree, want 1", n)
	}
	logs, _ := r.Logs(ctx, "feat", 50)
	tree := repo.Git("rev-parse", main+"^{tree}")
	if !strings.Contains(logs, "build reused from ") || !strings.Contains(logs, "(tree "+tree[:7]+")") {
		t.Errorf("feat's log says nothing of the reuse:\n%s", logs)
	}
	a, err := os.Stat(filepath.Join(r.workDir("production", main), "bin", "app"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.Stat(filepath.Join(r.workDir("feat", feat), "bin", "app"))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(a, b) {
		t.Error("the two checkouts share bin/app's inode: a write into one would change the other")
	}

	// A change to the tree builds.
	other := repo.commit("other", map[string]string{"main.go": "package main // changed\n"})
	if err := r.Prepare(ctx, repo.release("other", "other", other)); err != nil {
		t.Fatal(err)
	}
	if n := lines(t, marker); n != 2 {
		t.Errorf("built %d times after a change to the tree, want 2", n)
	}
}

// TestBuildWithoutOutputsNotReused: without outputs every environment
// builds.
func TestBuildWithoutOutputsNotReused(t *testing.T) {
	repo := newTestRepo(t)
	main := repo.commit("main", map[string]string{"a": "1\n"})
	feat := repo.commit("feat", nil)
	marker := filepath.Join(t.TempDir(), "built")
	r, _ := newRuntime(t, Options{Build: "echo built >> '" + marker + "'"})
	ctx := context.Background()
	for _, rel := range []*env.Release{repo.release("main", "main", main), repo.release("feat", "feat", feat)} {
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}
	if n := lines(t, marker); n != 2 {
		t.Errorf("built %d times, want 2", n)
	}
}

// TestCacheShareMethods: share copy gives each checkout its own writable
// files, symlink one link to the entry; a fork's (untrusted) change gets
// an entry of its own.
func TestCacheShareMethods(t *testing.T) {
	repo := newTestRepo(t)
	sha := repo.commit("main", map[string]string{"lock.txt": "v1\n"})
	run := "mkdir -p deps && echo x > deps/x"
	r, _ := newRuntime(t, Options{Caching: Caching{Caches: []CacheSpec{
		{Path: "copied", Key: []string{"lock.txt"}, Run: "mkdir -p copied && echo x > copied/x", Share: shareCopy},
		{Path: "linked", Key: []string{"lock.txt"}, Run: "mkdir -p linked && echo x > linked/x", Share: shareSymlink},
		{Path: "deps", Key: []string{"*.txt"}, Run: run},
	}}})
	ctx := context.Background()
	a, b := repo.release("a", "main", sha), repo.release("b", "main", sha)
	for _, rel := range []*env.Release{a, b} {
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}
	da, db := r.workDir("a", sha), r.workDir("b", sha)
	sa, err := os.Stat(filepath.Join(da, "copied", "x"))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := os.Stat(filepath.Join(db, "copied", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(sa, sb) || sa.Mode().Perm()&0o200 == 0 {
		t.Errorf("share copy: same file %v, mode %v; want separate writable files", os.SameFile(sa, sb), sa.Mode())
	}
	if err := os.WriteFile(filepath.Join(da, "copied", "x"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(db, "copied", "x")); got != "x\n" {
		t.Errorf("a write into a's copy reached b: %q", got)
	}
	if target, err := os.Readlink(filepath.Join(da, "linked")); err != nil || !strings.HasPrefix(target, r.depsDir()) {
		t.Errorf("share symlink: %q, %v; want a link into the cache", target, err)
	}
	if n := len(entries(t, r.depsDir())); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
	fork := repo.release("pr-1", "main", sha)
	fork.Trusted = false
	if err := r.Prepare(ctx, fork); err != nil {
		t.Fatal(err)
	}
	if n := len(entries(t, r.depsDir())); n != 6 {
		t.Errorf("%d entries after an untrusted change, want 6 (its own three)", n)
	}
}
