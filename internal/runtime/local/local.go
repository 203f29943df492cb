package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/forge/git"
)

// Inventory records what an environment owns.
type Inventory interface {
	PutItem(ctx context.Context, key string, it env.Item) error
	DeleteItem(ctx context.Context, key string, it env.Item) error
}

// Options configure the runtime.
type Options struct {
	// Dir holds work dirs and logs, one sub-directory per environment.
	Dir string
	// Build, Migrate and Run are shell commands (Run must listen on $PORT).
	Build, Migrate, Run string
	// HealthPath is polled until it answers 2xx.
	HealthPath string
	// StartTimeout bounds the wait for health; StepTimeout bounds build,
	// migrate and fetching the SHA (default 10m).
	StartTimeout, StepTimeout time.Duration
	// Env is added to the environment of every command of a trusted
	// change (not to pull requests from forks unless they are trusted).
	Env map[string]string
	// InheritEnv names more of previewd's own variables that commands
	// inherit, besides the basic ones (see inherited). Nothing else of
	// previewd's environment (tokens, passwords) reaches an app.
	InheritEnv []string
	// StopTimeout is how long a process gets between SIGTERM and SIGKILL.
	// Default 10s.
	StopTimeout time.Duration
	// OnExit is called when an environment's current process exits
	// without being asked to.
	OnExit func(key string)
	// GitEnv, if set, returns environment variables that give git fetch
	// its credentials (the forge's token, as GIT_CONFIG_* settings).
	GitEnv func(ctx context.Context) ([]string, error)
	Logger *slog.Logger
}

// Runtime runs environments as local processes.
type Runtime struct {
	o        Options
	inv      Inventory
	log      *slog.Logger
	instance string // marks our processes: PREVIEWD_INSTANCE=<instance>
	client   *http.Client

	fetchMu sync.Mutex // one fetch into the shared object cache at a time

	mu    sync.Mutex
	procs map[string]*proc // key -> current (routed) process
}

// proc is one running app process group.
type proc struct {
	Key   string `json:"key"`
	PID   int    `json:"pid"`
	Port  int    `json:"port"`
	SHA   string `json:"sha"`
	Dir   string `json:"dir"`
	Start uint64 `json:"start"` // kernel start time, to tell a reused pid apart

	done     chan struct{} // closed when the process has exited
	stopping bool
}

func (p *proc) item() env.Item {
	data, _ := json.Marshal(p)
	return env.Item{Kind: env.ItemProcess, Name: strconv.Itoa(p.PID), Data: data}
}

// New returns a runtime keeping its files under o.Dir.
func New(o Options, inv Inventory) (*Runtime, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	if o.StopTimeout == 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating runtime directory: %w", err)
	}
	return &Runtime{
		o:        o,
		inv:      inv,
		log:      o.Logger,
		instance: dir,
		client:   &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		procs:    map[string]*proc{},
	}, nil
}

func (r *Runtime) envDir(key string) string  { return filepath.Join(r.o.Dir, "envs", key) }
func (r *Runtime) logPath(key string) string { return filepath.Join(r.envDir(key), "app.log") }

// LogPath returns the file an environment's output goes to.
func (r *Runtime) LogPath(key string) string { return r.logPath(key) }

// workDir is the checkout of one SHA. Keys are DNS labels and SHAs are hex,
// so neither can leave the directory.
func (r *Runtime) workDir(key, sha string) string {
	return filepath.Join(r.envDir(key), "src-"+sha)
}

func workDirItem(dir string) env.Item { return env.Item{Kind: env.ItemWorkDir, Name: dir} }

// Prepare checks out exactly rel.SHA into its own work dir and runs the
// build there. A checkout that was built before is reused.
func (r *Runtime) Prepare(ctx context.Context, rel *env.Release) error {
	dir := r.workDir(rel.Key, rel.SHA)
	done := dir + ".ok"
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	if err := r.inv.PutItem(ctx, rel.Key, workDirItem(dir)); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing work dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("creating work dir: %w", err)
	}
	if err := r.checkout(ctx, rel, dir); err != nil {
		return err
	}
	if r.o.Build != "" {
		if err := r.step(ctx, "build", r.o.Build, dir, rel); err != nil {
			return err
		}
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return fmt.Errorf("marking work dir built: %w", err)
	}
	return nil
}

// checkout fetches the SHA into a bare object cache shared by all
// environments and extracts the tree with git archive.
func (r *Runtime) checkout(ctx context.Context, rel *env.Release, dir string) error {
	cache := filepath.Join(r.o.Dir, "cache.git")
	// A remote that hangs must not hold the fetch lock, and with it every
	// other environment's rollout, for ever.
	fctx, cancel := context.WithTimeout(ctx, r.o.StepTimeout)
	r.fetchMu.Lock()
	err := r.fetch(fctx, cache, rel)
	r.fetchMu.Unlock()
	cancel()
	if err != nil {
		return err
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := extract(ctx, cache, rel.SHA, tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("checking out %s: %w", env.ShortSHA(rel.SHA), err)
	}
	return os.Rename(tmp, dir)
}

func (r *Runtime) fetch(ctx context.Context, cache string, rel *env.Release) error {
	if _, err := os.Stat(filepath.Join(cache, "HEAD")); err != nil {
		if _, err := git.Run(ctx, "", "init", "--quiet", "--bare", "--", cache); err != nil {
			return err
		}
	}
	if _, err := git.Run(ctx, cache, "cat-file", "-e", rel.SHA+"^{commit}"); err == nil {
		return nil
	}
	var creds []string
	if r.o.GitEnv != nil {
		var err error
		if creds, err = r.o.GitEnv(ctx); err != nil {
			return err
		}
	}
	// The ref is a full ref name we built (refs/heads/<branch> or
	// refs/pull/N/head); "--" ends options, so neither the URL nor the ref
	// can be read as one.
	_, ferr := git.RunEnv(ctx, cache, creds, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", rel.Repo, "+"+rel.Ref+":refs/previewd/"+rel.Key)
	if _, err := git.Run(ctx, cache, "cat-file", "-e", rel.SHA+"^{commit}"); err == nil {
		return nil
	}
	// The branch moved on since it was listed; ask for the commit itself.
	if _, err := git.RunEnv(ctx, cache, creds, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", rel.Repo, rel.SHA); err != nil {
		return fmt.Errorf("fetching %s: %w", env.ShortSHA(rel.SHA), errors.Join(ferr, err))
	}
	return nil
}

// step runs one shell command of the app's (build or migrate) in dir with
// the release's variables, appending its output to the environment's log.
// A failure is an env.StepError with the log's tail.
func (r *Runtime) step(ctx context.Context, name, command, dir string, rel *env.Release) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.StepTimeout)
	defer cancel()
	logf, err := r.openLog(rel.Key)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==> %s %s at %s: %s\n", name, env.ShortSHA(rel.SHA), time.Now().UTC().Format(time.RFC3339), command)
	start := logSize(logf)
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = dir
	cmd.Env = r.environ(rel, 0)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return &env.StepError{Step: name, Err: err}
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-waited
		err = fmt.Errorf("%s: %w", name, ctx.Err())
	}
	// A step is over when its shell is: whatever it left running in its
	// group (a watcher, a dev server started with &) would otherwise run
	// on, unaccounted for, past the environment's teardown.
	killGroup(cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		return &env.StepError{Step: name, Err: err, Tail: tailFrom(r.logPath(rel.Key), start, 20)}
	}
	return nil
}

// Migrate runs the migrate command in the release's work dir.
func (r *Runtime) Migrate(ctx context.Context, rel *env.Release) error {
	if r.o.Migrate == "" {
		return nil
	}
	return r.step(ctx, "migrate", r.o.Migrate, r.workDir(rel.Key, rel.SHA), rel)
}

func (r *Runtime) openLog(key string) (*os.File, error) {
	if err := os.MkdirAll(r.envDir(key), 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}
	f, err := os.OpenFile(r.logPath(key), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	return f, nil
}

func logSize(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

// environ is what every command of the environment gets: previewd's own
// environment, the configured env, the release's variables, PORT and the
// marker by which previewd finds its processes again.
func (r *Runtime) environ(rel *env.Release, port int) []string {
	e := inherited(os.Environ(), r.o.InheritEnv)
	var keys []string
	// The configured env is for changes previewd trusts: an untrusted
	// change (a pull request from a fork) does not get it.
	if rel.Trusted {
		for k := range r.o.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			e = append(e, k+"="+r.o.Env[k])
		}
	}
	keys = keys[:0]
	for k := range rel.Vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e = append(e, k+"="+rel.Vars[k])
	}
	if port > 0 {
		e = append(e, "PORT="+strconv.Itoa(port))
	}
	return append(e, "PREVIEWD_INSTANCE="+r.instance, "PREVIEWD_ENV="+rel.Key)
}

// Deploy starts the release's app on a free port, waits until it is
// healthy, routes the environment to it and stops the process it replaces.
// If the new process never gets healthy, the old one keeps serving.
func (r *Runtime) Deploy(ctx context.Context, rel *env.Release) error {
	p, err := r.start(ctx, rel)
	if err != nil {
		return err
	}
	if err := r.waitHealthy(ctx, p); err != nil {
		r.stop(ctx, p)
		return &env.StepError{Step: "start", Err: err, Tail: tail(r.logPath(rel.Key), 20)}
	}
	r.mu.Lock()
	old := r.procs[rel.Key]
	r.procs[rel.Key] = p
	r.mu.Unlock()
	select {
	case <-p.done:
		// It died between its health check and becoming current, when
		// exited did not count it as current: report it now.
		if r.o.OnExit != nil {
			r.o.OnExit(p.Key)
		}
	default:
	}
	if old != nil && old != p {
		r.stop(ctx, old)
	}
	r.removeStaleWorkDirs(ctx, rel.Key, p.Dir)
	return nil
}

func (r *Runtime) start(ctx context.Context, rel *env.Release) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := r.workDir(rel.Key, rel.SHA)
	logf, err := r.openLog(rel.Key)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==> run %s on port %d at %s: %s\n", env.ShortSHA(rel.SHA), port, time.Now().UTC().Format(time.RFC3339), r.o.Run)
	// The run command may be any shell command line; the app runs in its
	// own process group, which is what is signalled and watched.
	cmd := exec.Command("/bin/sh", "-c", r.o.Run)
	cmd.Dir = dir
	cmd.Env = r.environ(rel, port)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, &env.StepError{Step: "start", Err: err}
	}
	p := &proc{Key: rel.Key, PID: cmd.Process.Pid, Port: port, SHA: rel.SHA, Dir: dir, Start: startTime(cmd.Process.Pid), done: make(chan struct{})}
	go func() {
		cmd.Wait()
		r.exited(p)
	}()
	if err := r.inv.PutItem(ctx, rel.Key, p.item()); err != nil {
		killGroup(p.PID, syscall.SIGKILL)
		<-p.done
		return nil, err
	}
	r.log.Debug("process started", "env", rel.Key, "sha", env.ShortSHA(rel.SHA), "pid", p.PID, "port", port)
	return p, nil
}

// exited is called once p's process is gone. What else ran in its
// process group goes with it.
func (r *Runtime) exited(p *proc) {
	killGroup(p.PID, syscall.SIGKILL)
	close(p.done)
	r.mu.Lock()
	current := r.procs[p.Key] == p && !p.stopping
	r.mu.Unlock()
	if current {
		r.log.Warn("process exited", "env", p.Key, "pid", p.PID, "sha", env.ShortSHA(p.SHA))
		if r.o.OnExit != nil {
			r.o.OnExit(p.Key)
		}
	}
}

func (r *Runtime) waitHealthy(ctx context.Context, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.StartTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) + r.o.HealthPath
	delay := 5 * time.Millisecond
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := r.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				return nil
			}
			last = fmt.Errorf("%s answered %s", r.o.HealthPath, resp.Status)
		} else {
			last = err
		}
		select {
		case <-p.done:
			return errors.New("the process exited before it was healthy")
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s: %v", r.o.StartTimeout, last)
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// stop ends p's process group (SIGTERM, then SIGKILL) and forgets it.
func (r *Runtime) stop(ctx context.Context, p *proc) {
	r.mu.Lock()
	p.stopping = true
	if r.procs[p.Key] == p {
		delete(r.procs, p.Key)
	}
	r.mu.Unlock()
	killGroup(p.PID, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(r.o.StopTimeout):
		killGroup(p.PID, syscall.SIGKILL)
		<-p.done
	}
	// Children the app left in its group go too.
	killGroup(p.PID, syscall.SIGKILL)
	if err := r.inv.DeleteItem(ctx, p.Key, p.item()); err != nil {
		r.log.Error("forgetting process", "env", p.Key, "pid", p.PID, "err", err)
	}
}

// removeStaleWorkDirs removes the environment's checkouts other than keep.
func (r *Runtime) removeStaleWorkDirs(ctx context.Context, key, keep string) {
	matches, _ := filepath.Glob(filepath.Join(r.envDir(key), "src-*"))
	for _, m := range matches {
		base := m
		for _, suffix := range []string{".ok", ".tmp"} {
			if filepath.Ext(m) == suffix {
				base = m[:len(m)-len(suffix)]
			}
		}
		if base == keep {
			continue
		}
		if err := os.RemoveAll(m); err != nil {
			r.log.Error("removing old work dir", "env", key, "dir", m, "err", err)
			continue
		}
		if base == m {
			r.inv.DeleteItem(ctx, key, workDirItem(m))
		}
	}
}

// Running reports whether the environment's process runs, and at which
// SHA.
func (r *Runtime) Running(ctx context.Context, key string) (bool, string, error) {
	r.mu.Lock()
	p := r.procs[key]
	r.mu.Unlock()
	if p == nil {
		return false, "", nil
	}
	select {
	case <-p.done:
		return false, p.SHA, nil
	default:
		return true, p.SHA, nil
	}
}

// LogTail returns the last n lines of the environment's log.
func (r *Runtime) LogTail(key string, n int) string { return tail(r.logPath(key), n) }

// Route returns the address the environment is served on.
func (r *Runtime) Route(key string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.procs[key]
	if p == nil {
		return "", false
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)), true
}

// Delete stops the environment's processes and removes its files: the
// items in the inventory, and its directory.
func (r *Runtime) Delete(ctx context.Context, key string, items []env.Item) error {
	r.mu.Lock()
	p := r.procs[key]
	r.mu.Unlock()
	if p != nil {
		r.stop(ctx, p)
	}
	var errs []error
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
	if err := r.forgetRef(ctx, key); err != nil {
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

// forgetRef deletes refs/previewd/<key> from the object cache, if there is
// one.
func (r *Runtime) forgetRef(ctx context.Context, key string) error {
	cache := filepath.Join(r.o.Dir, "cache.git")
	if _, err := os.Stat(filepath.Join(cache, "HEAD")); err != nil {
		return nil
	}
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	ref := "refs/previewd/" + key
	if _, err := git.Run(ctx, cache, "show-ref", "--verify", "--quiet", "--", ref); err != nil {
		return nil // not there
	}
	if _, err := git.Run(ctx, cache, "update-ref", "-d", "--", ref); err != nil {
		return fmt.Errorf("forgetting %s in the object cache: %w", ref, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop stops the environment's process, leaving its files and inventory
// of files alone.
func (r *Runtime) Stop(ctx context.Context, key string) {
	r.mu.Lock()
	p := r.procs[key]
	r.mu.Unlock()
	if p != nil {
		r.stop(ctx, p)
	}
}

// baseEnv are the variables of previewd's own environment that every
// command inherits: what a shell, a compiler and TLS need, and nothing
// that could be a secret of previewd's.
var baseEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "CGO_ENABLED", "CC", "CXX",
	"GOPATH", "GOROOT", "GOCACHE", "GOMODCACHE", "GOPROXY", "GOSUMDB", "GOPRIVATE", "GONOPROXY", "GONOSUMDB",
	"GOINSECURE", "GOFLAGS", "GOTOOLCHAIN", "GOWORK", "GOENV",
}

// inherited returns the entries of environ whose names are in baseEnv or
// extra, or start with LC_.
func inherited(environ, extra []string) []string {
	keep := make(map[string]bool, len(baseEnv)+len(extra))
	for _, n := range baseEnv {
		keep[n] = true
	}
	for _, n := range extra {
		keep[n] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if keep[name] || strings.HasPrefix(name, "LC_") {
			out = append(out, kv)
		}
	}
	return out
}
