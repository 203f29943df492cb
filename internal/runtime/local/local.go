package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/runtime"
)

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.Logs      = (*Runtime)(nil)
	_ runtime.Router    = (*Runtime)(nil)
	_ runtime.Recoverer = (*Runtime)(nil)
	_ runtime.Stopper   = (*Runtime)(nil)
	_ runtime.Sleeper   = (*Runtime)(nil)
	_ runtime.Meter     = (*Runtime)(nil)
)

// Options configure the runtime.
type Options struct {
	// Dir holds work dirs and logs, one sub-directory per environment.
	Dir string
	// Build, Migrate and Run are shell commands (Run must listen on
	// $HOST:$PORT).
	Build, Migrate, Run string
	// Processes, if set, are the environment's processes instead of Run:
	// exactly one is HTTP (it runs as Run would); see Process. Empty is
	// one HTTP process "web" running Run.
	Processes []Process
	// HealthPath is polled until it answers 2xx (on the HTTP process).
	HealthPath string
	// StartTimeout bounds the wait for health; StepTimeout bounds build,
	// migrate and fetching the SHA (default 10m).
	StartTimeout, StepTimeout time.Duration
	// Env is added to the environment of every command of a trusted
	// change (not to pull requests from forks unless they are trusted).
	Env map[string]string
	// InheritEnv names more of previewd's own variables that commands
	// inherit, besides the basic ones (env.BaseEnv). Nothing else of
	// previewd's environment (tokens, passwords) reaches an app.
	InheritEnv []string
	// StopTimeout is how long a process gets between SIGTERM and SIGKILL.
	// Default 10s.
	StopTimeout time.Duration
	// DrainTimeout bounds how long a replaced process keeps running for
	// the proxied requests it is still serving; it is stopped once they
	// are done, or when DrainTimeout is over. Default 30s.
	DrainTimeout time.Duration
	// RequireLoopback fails a start whose app listens on an address
	// beyond loopback (reachable around previewd's proxy) instead of
	// warning about it.
	RequireLoopback bool
	// OnExit is called when one of an environment's current processes
	// exits without being asked to.
	OnExit func(key string)
	// GitEnv, if set, returns environment variables that give git fetch
	// its credentials (the forge's token, as GIT_CONFIG_* settings).
	GitEnv func(ctx context.Context) ([]string, error)
	// Cache, if set, is the object cache to fetch into (shared with the
	// reader of each commit's app spec); default cache.git under Dir.
	Cache  *git.Cache
	Logger *slog.Logger

	// Caching configures dependency caches and build reuse (cache.go).
	Caching Caching
}

// Runtime runs environments as local processes.
type Runtime struct {
	o        Options
	inv      inventory.Recorder
	log      *slog.Logger
	instance string // marks our processes: PREVIEWD_INSTANCE=<instance>
	client   *http.Client
	cache    *git.Cache // the object cache shared by every environment
	proxy    *httputil.ReverseProxy
	// signal signals a process group (killGroup); the test seam for a
	// process that will not stop.
	signal func(pid int, sig syscall.Signal)

	mu    sync.Mutex
	procs map[string]*proc // key -> current (routed) process
	// workers are the current processes that are not routed: key ->
	// process name -> process.
	workers map[string]map[string]*proc
	// othersOf are the processes besides the HTTP one of each key's
	// current release (its commit's spec); a key without is the options'.
	othersOf map[string][]Process
	// web is the HTTP process; others the rest, by name.
	web    Process
	others []Process
	awk    string // the command that tags the others' lines
}

// New returns a runtime keeping its files under o.Dir and recording what
// it makes in inv.
func New(o Options, inv inventory.Recorder) (*Runtime, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("runtime directory: %w", err)
	}
	o.Dir = dir
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 10 * time.Minute
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	web, others, err := splitProcesses(o.Run, o.Processes)
	if err != nil {
		return nil, err
	}
	o.Run = web.Run
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating runtime directory: %w", err)
	}
	r := &Runtime{
		o:        o,
		inv:      inv,
		log:      o.Logger,
		instance: dir,
		client:   &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		cache:    git.NewCache(filepath.Join(dir, "cache.git")),
		procs:    map[string]*proc{},
		workers:  map[string]map[string]*proc{},
		othersOf: map[string][]Process{},
		signal:   killGroup,
		web:      web,
		others:   others,
	}
	if len(others) > 0 {
		r.awk = awkCommand()
	} else if _, err := exec.LookPath("awk"); err == nil {
		// A commit's spec may declare processes besides the HTTP one.
		r.awk = awkCommand()
	}
	if o.Cache != nil {
		r.cache = o.Cache
	}
	r.proxy = r.newProxy()
	return r, nil
}

func (r *Runtime) envDir(key string) string  { return filepath.Join(r.o.Dir, "envs", key) }
func (r *Runtime) logPath(key string) string { return filepath.Join(r.envDir(key), "app.log") }

// LogPath returns the file an environment's output goes to.
func (r *Runtime) LogPath(key string) string { return r.logPath(key) }

// Running reports whether the environment runs, and at which SHA: its
// HTTP process and every other process of its, at that SHA. One that
// exited (and was reported to OnExit) makes it not run, so the
// reconciler restarts it after a backoff, or gives up.
func (r *Runtime) Running(ctx context.Context, key string) (bool, string, error) {
	p := r.current(key)
	if p == nil {
		return false, "", nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return p.alive() && len(r.missingWorkers(key, p.SHA)) == 0, p.SHA, nil
}

func (r *Runtime) current(key string) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[key]
}

// Delete stops the environment's processes and removes its files: the
// items in the inventory, and its directory. What fails to go stays
// recorded.
func (r *Runtime) Delete(ctx context.Context, key string, items []env.Item) error {
	var errs []error
	if err := r.Stop(ctx, key); err != nil {
		errs = append(errs, err)
	}
	for _, it := range env.Find(items, env.ItemProcess) {
		var q proc
		if json.Unmarshal(it.Data, &q) == nil && q.PID > 0 && sameProcess(q.PID, q.Start) {
			stopDetached(q.PID, r.o.StopTimeout)
		}
		if err := r.inv.DeleteItem(ctx, key, it); err != nil {
			errs = append(errs, err)
		}
	}
	// The environment's ref in the shared object cache goes too, so its
	// commits become unreachable and git's automatic gc can prune them;
	// otherwise every branch ever deployed stays in the cache for ever.
	if err := r.cache.DeleteRef(ctx, git.CacheRef(key)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(r.envDir(key)); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", r.envDir(key), err))
	} else {
		for _, it := range env.Find(items, env.ItemWorkDir) {
			if err := r.inv.DeleteItem(ctx, key, it); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Stop stops the environment's processes at once (no drain), all
// together, leaving its files and their inventory alone.
func (r *Runtime) Stop(ctx context.Context, key string) error {
	r.mu.Lock()
	var ps []*proc
	if p := r.procs[key]; p != nil {
		ps = append(ps, p)
	}
	for _, w := range r.workers[key] {
		ps = append(ps, w)
	}
	r.mu.Unlock()
	return r.stopAll(ctx, ps)
}

// forget removes it from the inventory, logging a failure (the item stays
// recorded and is dealt with again on the next start).
func (r *Runtime) forget(ctx context.Context, key string, it env.Item) {
	if err := r.inv.DeleteItem(ctx, key, it); err != nil {
		r.log.Error("forgetting inventory item", "env", key, "kind", it.Kind, "name", it.Name, "err", err)
	}
}

// ReadFile implements runtime.FileReader from the object cache, which
// holds src's commit once Prepare has fetched it.
func (r *Runtime) ReadFile(ctx context.Context, src env.Source, path string) ([]byte, error) {
	return r.cache.File(ctx, src.SHA, path)
}
