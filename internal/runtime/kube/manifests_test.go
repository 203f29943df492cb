package kube

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/reconcile"

	"github.com/previewd/previewd/internal/testsvc"
)

// gitRepo is a real repository the tests commit manifests to.
type gitRepo struct {
	t   testing.TB
	dir string
}

func newGitRepo(t testing.TB) *gitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testsvc.SkipUnlessCI(t, "no git")
	}
	g := &gitRepo{t: t, dir: t.TempDir()}
	g.git("init", "-q", "--initial-branch=main", ".")
	return g
}

func (g *gitRepo) git(args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = g.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (an empty text removes the file) on branch (made
// from the current commit when new) and returns the commit.
func (g *gitRepo) commit(branch string, files map[string]string) string {
	g.t.Helper()
	switch {
	case g.git("symbolic-ref", "--short", "HEAD") == branch:
	case g.git("branch", "--list", branch) != "":
		g.git("checkout", "-q", branch)
	default:
		g.git("checkout", "-q", "-b", branch)
	}
	for name, text := range files {
		p := filepath.Join(g.dir, name)
		if text == "" {
			os.Remove(p)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			g.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
	g.git("add", "-A")
	g.git("commit", "-q", "--allow-empty", "-m", "manifests")
	return g.git("rev-parse", "HEAD")
}

// source is the environment of branch at commit, fetched from the repo.
func (g *gitRepo) source(key, branch, commit string) env.Source {
	return env.Source{Key: key, Kind: env.KindBranch, Branch: branch, SHA: commit, Repo: g.dir, Ref: "refs/heads/" + branch, Trusted: true}
}

// repoRelease is release() of src: the variables and URL of the test
// helpers, with src's repository.
func repoRelease(src env.Source) *env.Release {
	rel := release(src.Key, src.SHA)
	rel.Source = src
	return rel
}

func configMap(name, value string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  VALUE: " + value + "\n  HOST: {{.Host | quote}}\n"
}

// repoRuntime is a runtime that reads deploy/preview (and the migrate Job
// deploy/job.yaml, when given) from the environments' commits.
func (f *fixture) repoRuntime(o Options) *Runtime {
	f.t.Helper()
	o.Manifests, o.InRepo = "deploy/preview", true
	if o.Cache == nil {
		o.Cache = git.NewCache(filepath.Join(f.t.TempDir(), "cache.git"))
	}
	return f.runtime(o)
}

func (f *fixture) configValue(ns, name string) (string, error) {
	cm, err := f.cs.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return cm.Data["VALUE"], nil
}

// TestManifestsFromEachCommit: a branch whose manifests change across
// commits (an object added, one changed, one removed) gets exactly the
// manifests of its own SHA, the removed one is pruned, and an environment
// still at the old SHA keeps the old manifests. A reconcile of an
// unchanged SHA needs no git at all.
func TestManifestsFromEachCommit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := newGitRepo(t)
	shaA := g.commit("main", map[string]string{
		"deploy/preview/a.yaml":    configMap("kept", "one"),
		"deploy/preview/b.yaml":    configMap("removed", "one"),
		"deploy/preview/README":    "not a manifest",
		"deploy/other/x.yaml":      configMap("elsewhere", "one"),
		"app/main.go":              "package main\n",
		"deploy/preview/sub/y.yml": configMap("nested", "one"),
	})
	shaB := g.commit("feature", map[string]string{
		"deploy/preview/a.yaml": configMap("kept", "two"),
		"deploy/preview/b.yaml": "",
		"deploy/preview/c.yaml": configMap("added", "two"),
	})
	cacheDir := filepath.Join(t.TempDir(), "cache.git")
	r := f.repoRuntime(Options{Cache: git.NewCache(cacheDir)})

	feature, old := uniqueKey("feature"), uniqueKey("old")
	for _, k := range []string{feature, old} {
		f.cleanup("preview-" + k)
	}
	deploy := func(src env.Source) {
		t.Helper()
		rel := repoRelease(src)
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Apply(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}
	deploy(g.source(feature, "feature", shaA))
	deploy(g.source(old, "main", shaA))
	ns := "preview-" + feature
	for name, want := range map[string]string{"kept": "one", "removed": "one"} {
		if got, err := f.configValue(ns, name); err != nil || got != want {
			t.Errorf("at A: %s = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"elsewhere", "nested", "added"} {
		if _, err := f.configValue(ns, name); !apierrors.IsNotFound(err) {
			t.Errorf("at A: %s: %v, want none (not a top-level manifest of the commit)", name, err)
		}
	}

	// The branch moves on: its own new manifests, and the removed object
	// is pruned from the cluster and the inventory.
	deploy(g.source(feature, "feature", shaB))
	for name, want := range map[string]string{"kept": "two", "added": "two"} {
		if got, err := f.configValue(ns, name); err != nil || got != want {
			t.Errorf("at B: %s = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := f.configValue(ns, "removed"); !apierrors.IsNotFound(err) {
		t.Errorf("at B: the ConfigMap that left the templates is not pruned: %v", err)
	}
	if _, ok := f.items(feature)["ConfigMap/"+ns+"/removed"]; ok {
		t.Error("at B: the pruned ConfigMap is still in the inventory")
	}
	// The other environment is still at A, with A's manifests.
	if got, err := f.configValue("preview-"+old, "kept"); err != nil || got != "one" {
		t.Errorf("old env: kept = %q, %v; want A's value", got, err)
	}
	if _, err := f.configValue("preview-"+old, "removed"); err != nil {
		t.Errorf("old env lost A's object: %v", err)
	}

	// Both commits are parsed now: without the object cache and the
	// repository, a reconcile of either SHA still renders.
	if err := os.RemoveAll(cacheDir); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(g.dir); err != nil {
		t.Fatal(err)
	}
	deploy(g.source(feature, "feature", shaB))
	deploy(g.source(old, "main", shaA))
}

// TestManifestsTemplateErrorFailsOnlyThatEnv: a commit whose manifests do
// not render (a template error, bad YAML) fails its environment, for that
// SHA, with the file and line; another environment deploys as ever.
func TestManifestsTemplateErrorFailsOnlyThatEnv(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := newGitRepo(t)
	good := g.commit("main", map[string]string{"deploy/preview/app.yaml": configMap("app", "ok")})
	badTemplate := g.commit("bad-template", map[string]string{
		"deploy/preview/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  VALUE: {{.Nope}}\n",
	})
	g.git("checkout", "-q", "main")
	badSyntax := g.commit("bad-syntax", map[string]string{"deploy/preview/app.yaml": "kind: ConfigMap\nname: {{.Key | nope}}\n"})
	g.git("checkout", "-q", "main")
	badYAML := g.commit("bad-yaml", map[string]string{
		"deploy/preview/app.yaml": configMap("app", "ok") + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n   bad: indent\n",
	})
	noDir := g.commit("no-manifests", map[string]string{"deploy/preview/app.yaml": ""})

	r := f.repoRuntime(Options{})
	tests := map[string]struct {
		branch, sha string
		want        []string
	}{
		"execute": {"bad-template", badTemplate, []string{"deploy/preview/app.yaml:6:", "Nope"}},
		"parse":   {"bad-syntax", badSyntax, []string{"deploy/preview/app.yaml:2:", `function "nope" not defined`}},
		"yaml":    {"bad-yaml", badYAML, []string{"deploy/preview/app.yaml:13:", "document 2"}},
		"no dir":  {"no-manifests", noDir, []string{"deploy/preview", "no such directory"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			rel := repoRelease(g.source(uniqueKey("bad"), tt.branch, tt.sha))
			err := r.Prepare(ctx, rel)
			var se *env.StepError
			if !errors.As(err, &se) || se.Step != "render" {
				t.Fatalf("Prepare = %v, want a render step error (terminal for the SHA)", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	// Through the reconciler: the broken environment fails with the file
	// and line, the good one is ready.
	src := &source{}
	rec := reconcile.New(reconcile.Options{
		Store: f.store, Source: src, Database: database.None{}, Runtime: r,
		URL: func(k string) string { return "https://" + k + ".preview.example.com" },
	})
	okKey, badKey := uniqueKey("fine"), uniqueKey("broken")
	for _, k := range []string{okKey, badKey} {
		f.cleanup("preview-" + k)
	}
	src.set(g.source(okKey, "main", good), g.source(badKey, "bad-template", badTemplate))
	if err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{okKey, badKey} {
		if _, err := rec.Reconcile(ctx, k); err != nil && k == okKey {
			t.Fatal(err)
		}
	}
	e, err := f.store.Get(ctx, okKey)
	if err != nil || e.Status != env.StatusReady {
		t.Errorf("good environment = %s %q, %v; want ready", e.Status, e.Message, err)
	}
	e, err = f.store.Get(ctx, badKey)
	if err != nil || e.Status != env.StatusFailed || !strings.Contains(e.Message, "deploy/preview/app.yaml:6:") {
		t.Errorf("broken environment = %s %q, %v; want failed naming app.yaml:6", e.Status, e.Message, err)
	}
	if _, err := f.cs.CoreV1().Namespaces().Get(ctx, "preview-"+badKey, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the broken environment got a namespace: %v", err)
	}
}

// TestForkUsesProductionManifests: an untrusted change renders the
// production branch's manifests at production's SHA, never its own.
func TestForkUsesProductionManifests(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := newGitRepo(t)
	prodSHA := g.commit("main", map[string]string{"deploy/preview/app.yaml": configMap("app", "production")})
	forkSHA := g.commit("fork", map[string]string{
		"deploy/preview/app.yaml":  configMap("app", "fork"),
		"deploy/preview/evil.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: evil\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default, namespace: default}]\n",
	})
	g.git("update-ref", "refs/pull/1/head", forkSHA)
	prod := env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: prodSHA, Repo: g.dir, Ref: "refs/heads/main", Trusted: true}
	r := f.repoRuntime(Options{Production: func(context.Context) (env.Source, error) { return prod, nil }})

	key := uniqueKey("fork")
	ns := "preview-" + key
	f.cleanup(ns)
	fork := env.Source{Key: key, Kind: env.KindPullRequest, Number: 1, Branch: "fork", SHA: forkSHA, Repo: g.dir, Ref: "refs/pull/1/head", Fork: true}
	rel := repoRelease(fork)
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if got, err := f.configValue(ns, "app"); err != nil || got != "production" {
		t.Errorf("fork's ConfigMap = %q, %v; want production's manifests", got, err)
	}
	if _, err := f.cs.RbacV1().ClusterRoleBindings().Get(ctx, "evil", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the fork's own manifest was applied: %v", err)
	}
	// The namespace carries the fork's SHA: it runs the fork's image.
	if _, at, err := r.Running(ctx, key); err != nil || at != forkSHA {
		t.Errorf("Running = %q, %v; want the fork's SHA", at, err)
	}

	// Trusted, the same change renders its own manifests.
	fork.Trusted = true
	if err := r.Prepare(ctx, repoRelease(fork)); err != nil {
		t.Fatal(err)
	}
	tm, err := r.templatesFor(ctx, repoRelease(fork))
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.manifests.files) != 2 {
		t.Errorf("trusted change renders %d files, want its own 2", len(tm.manifests.files))
	}

	// Without a way to learn production's source, an untrusted change
	// fails rather than render its own manifests.
	r2 := f.repoRuntime(Options{})
	fork.Trusted = false
	if err := r2.Prepare(ctx, repoRelease(fork)); err == nil {
		t.Error("an untrusted change rendered without production's source")
	}
}

// TestMigrateJobFromCommit: the migrate Job template inside the
// repository is read at each commit, like the manifests.
func TestMigrateJobFromCommit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := newGitRepo(t)
	job := func(name string) string {
		return "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: " + name + "-{{.ShortSHA}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: {{.Image | quote}}}]\n"
	}
	a := g.commit("main", map[string]string{"deploy/preview/app.yaml": configMap("app", "a"), "deploy/job.yaml": job("first")})
	b := g.commit("main", map[string]string{"deploy/job.yaml": job("second")})
	r := f.repoRuntime(Options{MigrateJob: "deploy/job.yaml"})
	for commit, want := range map[string]string{a: "first-" + env.ShortSHA(a), b: "second-" + env.ShortSHA(b)} {
		rel := repoRelease(g.source(uniqueKey("job"), "main", commit))
		tm, err := r.templatesFor(ctx, rel)
		if err != nil {
			t.Fatal(err)
		}
		d, err := r.Data(rel)
		if err != nil {
			t.Fatal(err)
		}
		j, err := migrateJob(tm.migrate, nil, d)
		if err != nil {
			t.Fatal(err)
		}
		if j.GetName() != want {
			t.Errorf("job at %s = %s, want %s", env.ShortSHA(commit), j.GetName(), want)
		}
	}
	c := g.commit("main", map[string]string{"deploy/job.yaml": ""})
	err := r.Migrate(ctx, repoRelease(g.source(uniqueKey("job"), "main", c)))
	var se *env.StepError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "deploy/job.yaml") {
		t.Errorf("Migrate without the Job file = %v, want a step error naming it", err)
	}
}

// TestParsedCacheBound: the templates parsed per (SHA, path) are bounded;
// the oldest go first.
func TestParsedCacheBound(t *testing.T) {
	var c parsedCache
	for i := range maxParsed + 1 {
		c.put(parsedKey{sha: sha(byte('a' + i%26)), path: string(rune('A' + i))}, i)
	}
	if _, ok := c.get(parsedKey{sha: sha('a'), path: "A"}); ok {
		t.Error("the oldest entry is still kept")
	}
	if v, ok := c.get(parsedKey{sha: sha(byte('a' + maxParsed%26)), path: string(rune('A' + maxParsed))}); !ok || v != maxParsed {
		t.Errorf("the newest entry = %v, %v", v, ok)
	}
	if len(c.byKey) != maxParsed || len(c.order) != maxParsed {
		t.Errorf("kept %d (%d in order), want %d", len(c.byKey), len(c.order), maxParsed)
	}
}
