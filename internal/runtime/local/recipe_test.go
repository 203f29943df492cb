package local

import (
	"archive/zip"
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

// The README's cache recipes (section Recipes), run as written through
// the runtime, with only what makes them offline added: a module proxy
// and a wheel directory in the test's temp dirs.

// goProxy writes a file:// module proxy holding example.com/greet v1.0.0.
func goProxy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	v := filepath.Join(dir, "example.com", "greet", "@v")
	if err := os.MkdirAll(v, 0o755); err != nil {
		t.Fatal(err)
	}
	mod := "module example.com/greet\n\ngo 1.22\n"
	for name, content := range map[string]string{
		"list":        "v1.0.0\n",
		"v1.0.0.info": `{"Version":"v1.0.0","Time":"2026-01-01T00:00:00Z"}`,
		"v1.0.0.mod":  mod,
	} {
		if err := os.WriteFile(filepath.Join(v, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(v, "v1.0.0.zip"))
	if err != nil {
		t.Fatal(err)
	}
	z := zip.NewWriter(f)
	for name, content := range map[string]string{
		"go.mod":   mod,
		"greet.go": "package greet\n\nfunc Hello() string { return \"hello from greet\" }\n",
	} {
		w, err := z.Create("example.com/greet@v1.0.0/" + name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(content))
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return "file://" + dir
}

// TestRecipeGoModules: Go modules in a cache keyed by go.sum, the build
// reused by tree; the second branch neither downloads nor builds.
func TestRecipeGoModules(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go")
	}
	proxy := goProxy(t)
	goEnv := map[string]string{"GOPROXY": proxy, "GOSUMDB": "off", "GOFLAGS": "-buildvcs=false"}
	repo := newTestRepo(t)
	repo.Write("go.mod", "module example.com/app\n\ngo 1.22\n")
	repo.Write("main.go", "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello()) }\n")
	get := exec.Command("go", "get", "example.com/greet@v1.0.0")
	get.Dir = repo.Dir
	get.Env = append(os.Environ(), "GOPROXY="+proxy, "GOSUMDB=off", "GOFLAGS=-mod=mod", "GOMODCACHE="+t.TempDir())
	if out, err := get.CombinedOutput(); err != nil {
		t.Fatalf("go get: %v\n%s", err, out)
	}
	repo.Write(".gitignore", ".gomodcache/\nbin/\n")
	main := repo.commit("main", nil)
	feat := repo.commit("feat", nil)
	marker := filepath.Join(t.TempDir(), "downloads")
	r, _ := newRuntime(t, Options{
		Env:   goEnv,
		Build: "GOMODCACHE=$PWD/.gomodcache go build -o bin/app .",
		Caching: Caching{
			Caches: []CacheSpec{{Path: ".gomodcache", Key: []string{"go.sum"},
				Run: "GOMODCACHE=$PWD/.gomodcache GOFLAGS=-modcacherw go mod download && echo >> '" + marker + "'"}},
			Outputs: []string{"bin/"},
		},
	})
	ctx := context.Background()
	for _, rel := range []*env.Release{repo.release("main", "main", main), repo.release("feat", "feat", feat)} {
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatalf("prepare %s: %v", rel.Key, err)
		}
		out, err := exec.Command(filepath.Join(r.workDir(rel.Key, rel.SHA), "bin", "app")).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "hello from greet" {
			t.Errorf("%s's app: %q, %v", rel.Key, out, err)
		}
	}
	if n := lines(t, marker); n != 1 {
		t.Errorf("go mod download ran %d times, want 1", n)
	}
	if logs, _ := r.Logs(ctx, "feat", 20); !strings.Contains(logs, "build reused from") {
		t.Errorf("feat built again:\n%s", logs)
	}
}

// pythonWithPip returns a python3 that has pip: the first on PATH, else
// Debian's. Without one the test skips, except in CI, which installs
// Debian's (scripts/install-test-deps.sh), where it fails.
func pythonWithPip(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		if py, err := exec.LookPath(name); err == nil && exec.Command(py, "-m", "pip", "--version").Run() == nil {
			return py
		}
	}
	if testsvc.InCI() {
		t.Fatal("no python3 with pip (scripts/install-test-deps.sh installs Debian's python3-pip)")
	}
	t.Skip("no python3 with pip")
	return ""
}

// TestRecipePip: pip install --target, keyed by requirements.txt; the app
// imports from it through PYTHONPATH.
func TestRecipePip(t *testing.T) {
	py := pythonWithPip(t)
	wheels := t.TempDir()
	f, err := os.Create(filepath.Join(wheels, "greet-1.0.0-py3-none-any.whl"))
	if err != nil {
		t.Fatal(err)
	}
	z := zip.NewWriter(f)
	for name, content := range map[string]string{
		"greet/__init__.py":              "def hello():\n    return 'hello from greet'\n",
		"greet-1.0.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: greet\nVersion: 1.0.0\n",
		"greet-1.0.0.dist-info/WHEEL":    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
		"greet-1.0.0.dist-info/RECORD":   "greet/__init__.py,,\ngreet-1.0.0.dist-info/METADATA,,\ngreet-1.0.0.dist-info/WHEEL,,\ngreet-1.0.0.dist-info/RECORD,,\n",
	} {
		w, err := z.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(content))
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	repo := newTestRepo(t)
	main := repo.commit("main", map[string]string{"requirements.txt": "greet==1.0.0\n", "app.py": "import greet\nprint(greet.hello())\n"})
	feat := repo.commit("feat", map[string]string{"README": "x\n"})
	marker := filepath.Join(t.TempDir(), "installs")
	r, _ := newRuntime(t, Options{
		Env: map[string]string{"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wheels, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": ".pydeps"},
		Caching: Caching{Caches: []CacheSpec{{Path: ".pydeps", Key: []string{"requirements.txt"},
			Run: "'" + py + "' -m pip install --target .pydeps -r requirements.txt && echo >> '" + marker + "'"}}},
		StepTimeout: 2 * time.Minute,
	})
	ctx := context.Background()
	for _, rel := range []*env.Release{repo.release("main", "main", main), repo.release("feat", "feat", feat)} {
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatalf("prepare %s: %v", rel.Key, err)
		}
		cmd := exec.Command(py, "app.py")
		cmd.Dir = r.workDir(rel.Key, rel.SHA)
		cmd.Env = append(os.Environ(), "PYTHONPATH=.pydeps")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "hello from greet" {
			t.Errorf("%s's app: %q, %v", rel.Key, out, err)
		}
	}
	if n := lines(t, marker); n != 1 {
		t.Errorf("pip install ran %d times, want 1", n)
	}
}
