// Package demo is `previewd demo`: a throwaway git repository holding the
// example app, with a production branch and two feature branches, served
// by previewd on embedded defaults (git forge, local runtime, SQLite).
// Nothing needs to be installed beyond Go and git, and everything it makes
// is removed when it stops.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/previewd/previewd"
	"github.com/previewd/previewd/examples/markdown-editor/app"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/daemon"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/progress"
)

// Options configure the demo.
type Options struct {
	// Listen is the address to serve on; if busy, a free port is used.
	Listen string
	// Dir, if set, is used instead of a new temporary directory, and kept.
	Dir     string
	Version string
	Out     io.Writer
	// TTY says whether Out is a terminal (progress shows a spinner).
	TTY    bool
	Logger *slog.Logger
}

// Branches are the demo's feature branches and the banner each shows.
var Branches = map[string]string{
	"add-banner":   "🎉 Preview of add-banner: a new banner, in its own environment",
	"holiday-sale": "🎄 Holiday sale preview: 30% off everything (not in production!)",
}

// Run builds the repository, serves it and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "previewd-demo-")
		if err != nil {
			return err
		}
		dir = d
		defer func() {
			os.RemoveAll(dir)
			fmt.Fprintf(o.Out, "removed %s\n", dir)
		}()
	}
	fmt.Fprintf(o.Out, "previewd demo: making a git repository with the example app in %s\n", dir)
	repo, work, err := MakeRepo(ctx, dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
	}
	cfg, err := Config(dir, repo, ln.Addr().String())
	if err != nil {
		return err
	}
	d, err := daemon.New(ctx, cfg, daemon.Options{Version: o.Version, Logger: o.Logger, Listener: ln, StopOnExit: true})
	if err != nil {
		return err
	}
	dash := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(o.Out, "dashboard: %s\n", dash)
	fmt.Fprintf(o.Out, "building production and %d branches (the first build compiles the app; later ones are quicker)...\n", len(Branches))
	go watch(ctx, d, o.Out, o.TTY, dash, repo, work)
	return d.Run(ctx)
}

// Config is the demo's configuration: the embedded defaults, with the
// repository, a data dir under dir and the listen address.
func Config(dir, repo, listen string) (*config.Config, error) {
	y := fmt.Sprintf(`
listen: %q
dataDir: %q
forge:
  kind: git
  git: {url: %q, pollInterval: 1s, productionBranch: main}
runtime:
  kind: local
  local:
    build: go build -o server .
    run: ./server serve
    healthPath: /healthz
    startTimeout: 30s
    env: {GOWORK: "off", GOTOOLCHAIN: local, GOFLAGS: "-mod=mod"}
database:
  kind: sqlite
migrate: ./server migrate
`, listen, filepath.Join(dir, "data"), repo)
	return config.Parse([]byte(y), dir, os.LookupEnv)
}

// MakeRepo writes the example app into a new bare repository at
// dir/shop.git with a main branch and the feature branches, and leaves a
// clone at dir/work for the user to push from.
func MakeRepo(ctx context.Context, dir string) (repo, work string, err error) {
	repo, work = filepath.Join(dir, "shop.git"), filepath.Join(dir, "work")
	if err := git(ctx, dir, "init", "--quiet", "--bare", "--initial-branch=main", repo); err != nil {
		return "", "", err
	}
	if err := git(ctx, dir, "init", "--quiet", "--initial-branch=main", work); err != nil {
		return "", "", err
	}
	if err := writeApp(work); err != nil {
		return "", "", err
	}
	if err := commitAll(ctx, work, "markdown editor"); err != nil {
		return "", "", err
	}
	if err := git(ctx, work, "remote", "add", "origin", repo); err != nil {
		return "", "", err
	}
	names := make([]string, 0, len(Branches))
	for b := range Branches {
		names = append(names, b)
	}
	sort.Strings(names)
	for _, b := range names {
		if err := git(ctx, work, "checkout", "--quiet", "-b", b, "main"); err != nil {
			return "", "", err
		}
		if err := os.WriteFile(filepath.Join(work, "banner.txt"), []byte(Branches[b]+"\n"), 0o644); err != nil {
			return "", "", err
		}
		if err := commitAll(ctx, work, "banner for "+b); err != nil {
			return "", "", err
		}
	}
	if err := git(ctx, work, "checkout", "--quiet", "main"); err != nil {
		return "", "", err
	}
	args := append([]string{"push", "--quiet", "origin", "main"}, names...)
	if err := git(ctx, work, args...); err != nil {
		return "", "", err
	}
	return repo, work, nil
}

// writeApp writes the example app's source, a main.go and a go.mod/go.sum
// with previewd's own requirements (so it builds from the module cache).
func writeApp(dir string) error {
	err := fs.WalkDir(app.Source, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := fs.ReadFile(app.Source, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, "app", filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("writing the example app: %w", err)
	}
	mod := previewd.GoMod
	if i := bytes.IndexByte(mod, '\n'); i >= 0 {
		mod = append([]byte("module markdown-editor"), mod[i:]...)
	}
	files := map[string][]byte{
		"go.mod":     mod,
		"go.sum":     previewd.GoSum,
		"main.go":    []byte(mainGo),
		"banner.txt": nil,
		".gitignore": []byte("/server\n/*.sqlite*\n"),
		"README.md":  []byte(readme),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

const mainGo = `// Command markdown-editor is previewd's example app.
package main

import (
	"context"
	"os"

	"markdown-editor/app"
)

func main() {
	os.Exit(app.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
`

const readme = `# markdown-editor

previewd's example app. Every branch pushed here gets its own environment:
edit banner.txt, commit, and push a new branch.
`

func commitAll(ctx context.Context, dir, msg string) error {
	if err := git(ctx, dir, "add", "-A"); err != nil {
		return err
	}
	return git(ctx, dir, "-c", "user.name=previewd demo", "-c", "user.email=demo@previewd.invalid", "commit", "--quiet", "-m", msg)
}

func git(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// watch prints each environment's steps as the CLI's redeploy does
// (progress.Printer: building, migrating, starting, then ready with its
// URL or failed with why, again after each new commit, and removed), read
// from the store every 200 ms, with a spinner line on a terminal; then,
// once everything is ready, what to try.
func watch(ctx context.Context, d *daemon.Daemon, out io.Writer, tty bool, dash, repo, work string) {
	p := progress.NewPrinter(out, tty)
	defer p.Stop()
	seen := map[string]bool{}
	hinted := false
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.Tick()
		live, err := d.Store().Live(ctx)
		if err != nil {
			continue
		}
		ready := 0
		for _, e := range live {
			if e.Status == env.StatusReady {
				ready++
			}
			seen[e.Key] = true
			p.Change(progress.FromEnvironment(e))
		}
		for k := range seen {
			if !isLive(live, k) {
				p.Change(env.Change{Key: k, Status: env.StatusDeleting, Removed: true})
				delete(seen, k)
			}
		}
		if !hinted && ready >= 1+len(Branches) {
			hinted = true
			p.Printf(`
All %d environments are ready. Dashboard: %s
The repository is %s. Try a new branch (it appears within seconds):
  cd %s
  git checkout -b my-idea && echo "My idea" > banner.txt
  git commit -qam "my idea" && git push -q origin my-idea
Delete it again with: git push -q origin --delete my-idea
Press Ctrl-C to stop; everything the demo made is removed.
`, len(live), dash, repo, work)
		}
	}
}

func isLive(live []env.Environment, key string) bool {
	for _, e := range live {
		if e.Key == key {
			return true
		}
	}
	return false
}

// ErrNoGit is returned when git is not installed.
var ErrNoGit = errors.New("previewd demo needs git on the PATH")
