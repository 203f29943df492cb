// Package daemon wires previewd together from its config: the store, the
// forge, the database provider, the runtime, the reconciler and the HTTP
// server, and runs them until the context ends.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/database/sqlite"
	"github.com/previewd/previewd/internal/forge/git"
	"github.com/previewd/previewd/internal/reconcile"
	"github.com/previewd/previewd/internal/runtime/local"
	"github.com/previewd/previewd/internal/server"
	"github.com/previewd/previewd/internal/store"
)

// Options are what the daemon needs besides the config.
type Options struct {
	Version string
	Logger  *slog.Logger
	// Listener, if set, is used instead of listening on the config's
	// address (tests pass one on a free port).
	Listener net.Listener
	// StopOnExit stops every environment's processes when the daemon
	// ends (previewd demo). Without it they keep running and are adopted
	// by the next start.
	StopOnExit bool
	// Ready, if set, is called once the HTTP server listens.
	Ready func(addr string)
}

// Daemon is a running previewd.
type Daemon struct {
	cfg     *config.Config
	o       Options
	log     *slog.Logger
	store   *store.Store
	db      database.Provider
	rt      *local.Runtime
	rec     *reconcile.Reconciler
	srv     *server.Server
	resync  chan struct{}
	reg     *prometheus.Registry
	metrics *metrics
	gh      gitHubParts
	kube    kubeParts
	// src is the forge; collecting orphans asks it what is wanted.
	src reconcile.Source
}

// New builds a daemon from cfg. Nothing runs until Run.
func New(ctx context.Context, cfg *config.Config, o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{cfg: cfg, o: o, log: o.Logger, resync: make(chan struct{}, 1), reg: prometheus.NewRegistry()}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	var st *store.Store
	var err error
	if cfg.Store.Kind == "postgres" {
		st, err = store.OpenPostgres(ctx, cfg.Store.Postgres.URL)
	} else {
		st, err = store.Open(ctx, filepath.Join(cfg.DataDir, "previewd.db"))
	}
	if err != nil {
		return nil, err
	}
	d.store = st
	if d.db, err = OpenDatabase(ctx, cfg); err != nil {
		st.Close()
		return nil, err
	}
	src, err := openSource(cfg, o.Logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	d.src = src
	d.gh = d.gitHub(src)
	d.rt, err = local.New(local.Options{
		Dir:          cfg.DataDir,
		Build:        cfg.Runtime.Local.Build,
		Migrate:      cfg.Migrate,
		Run:          cfg.Runtime.Local.Run,
		HealthPath:   cfg.Runtime.Local.HealthPath,
		StartTimeout: cfg.Runtime.Local.StartTimeout.Duration,
		StepTimeout:  cfg.Runtime.Local.BuildTimeout.Duration,
		Env:          cfg.Runtime.Local.Env,
		InheritEnv:   cfg.Runtime.Local.InheritEnv,
		OnExit:       d.onExit,
		GitEnv:       d.gh.gitEnv,
		Logger:       o.Logger,
	}, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	if d.kube, err = openKube(cfg, st, o.Logger); err != nil {
		st.Close()
		return nil, err
	}
	d.metrics = newMetrics(d.reg, st)
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.rec = reconcile.New(reconcile.Options{
		Store:       st,
		Source:      src,
		Database:    d.db,
		Runtime:     d.runtime(),
		Notifiers:   append([]reconcile.Notifier{d.metrics}, d.gh.notifiers()...),
		URL:         d.envURL,
		Workers:     cfg.Concurrency,
		MaxRestarts: cfg.Runtime.Local.MaxRestarts,
		Logger:      o.Logger,
	})
	d.srv = server.New(server.Options{
		Store:        st,
		Domain:       cfg.Domain,
		Route:        d.route(),
		Ready:        d.ready,
		Plugin:       d.kube.plugin,
		Enqueue:      d.rec.Enqueue,
		Resync:       d.Resync,
		SourceStatus: d.rec.SourceStatus,
		Logs:         d.rt.LogTail,
		Webhooks:     d.gh.webhooks(),
		Gatherer:     d.reg,
		Version:      o.Version,
		Logger:       o.Logger,
	})
	return d, nil
}

func openSource(cfg *config.Config, log *slog.Logger) (reconcile.Source, error) {
	switch cfg.Forge.Kind {
	case "github":
		return openGitHub(cfg, log)
	case "git":
		g := cfg.Forge.Git
		return git.New(git.Options{URL: g.URL, ProductionBranch: g.ProductionBranch, Branches: g.Branches, IgnoreBranches: g.IgnoreBranches}), nil
	}
	return nil, fmt.Errorf("forge.kind: unknown value %q", cfg.Forge.Kind)
}

// OpenDatabase returns the configured database provider. The db commands
// use it too, so they run the same code as serve.
func OpenDatabase(ctx context.Context, cfg *config.Config) (database.Provider, error) {
	switch cfg.Database.Kind {
	case "none":
		return database.None{}, nil
	case "sqlite":
		return sqlite.New(filepath.Join(cfg.DataDir, "databases"), cfg.Database.SQLite.Seed)
	case "postgres":
		return openPostgres(ctx, cfg)
	}
	return nil, fmt.Errorf("database.kind: unknown value %q", cfg.Database.Kind)
}

// secret returns the random secret kept in the data dir, making it on
// first use.
func secret(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "secret")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 32)
	rand.Read(buf)
	s := hex.EncodeToString(buf)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, os.Rename(tmp, path)
}

// Handler is the HTTP handler (API, dashboard, proxy).
func (d *Daemon) Handler() http.Handler { return d.srv }

// Store is the daemon's store.
func (d *Daemon) Store() *store.Store { return d.store }

// Resync asks for the sources to be listed now.
func (d *Daemon) Resync() {
	select {
	case d.resync <- struct{}{}:
	default:
	}
}

// onExit is the runtime's report that an environment's process died: look
// again after a backoff that grows with the restarts so far.
func (d *Daemon) onExit(key string) {
	delay := 100 * time.Millisecond
	if rec, err := d.store.GetRecord(context.Background(), key); err == nil {
		for i := 0; i < reconcile.RecentRestarts(rec, time.Now()) && delay < 30*time.Second; i++ {
			delay *= 2
		}
	}
	d.rec.EnqueueAfter(key, delay)
}

// Run serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.store.Close()
	if c, ok := d.db.(interface{ Close() }); ok {
		defer c.Close()
	}
	items, err := d.store.AllItems(ctx)
	if err != nil {
		return err
	}
	if err := d.rt.Recover(ctx, items); err != nil {
		return fmt.Errorf("recovering processes: %w", err)
	}
	ln := d.o.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", d.cfg.Listen); err != nil {
			return fmt.Errorf("listening on %s: %w", d.cfg.Listen, err)
		}
	}
	hs := httpServer(d.srv, idleTimeout)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			cancel()
		}
	}()
	leading, err := d.lead(ctx, cancel, errc)
	if err != nil {
		hs.Close()
		wg.Wait()
		return err
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		whenLeading(ctx, leading, d.rec.Run)
	}()
	go func() {
		defer wg.Done()
		whenLeading(ctx, leading, d.poll)
	}()
	d.log.Info("serving", "addr", ln.Addr().String(), "dataDir", d.cfg.DataDir, "forge", d.cfg.Forge.Kind, "runtime", d.cfg.Runtime.Kind, "database", d.cfg.Database.Kind)
	if d.o.Ready != nil {
		d.o.Ready(ln.Addr().String())
	}
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	hs.Shutdown(sctx)
	wg.Wait()
	d.gh.wait()
	if d.o.StopOnExit {
		d.stopAll(sctx)
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// httpServer is the server for the API, dashboard, webhooks and preview
// proxy. Headers must come quickly (slowloris) and idle keep-alive
// connections are closed, so clients that go quiet cannot pile up
// connections and file descriptors. There is no read or write timeout on
// the whole request: the proxy streams (server-sent events, websockets,
// long downloads) to the environments.
func httpServer(h http.Handler, idle time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idle,
		MaxHeaderBytes:    64 << 10,
	}
}

// idleTimeout closes keep-alive connections that stay idle this long.
const idleTimeout = 2 * time.Minute

// poll lists the source now, on every interval and on Resync.
func (d *Daemon) poll(ctx context.Context) {
	interval := d.cfg.Forge.PollInterval()
	t := time.NewTimer(0)
	defer t.Stop()
	collected := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.resync:
		}
		if err := d.rec.Sync(ctx); err == nil && !collected {
			collected = true
			d.collect(ctx)
		}
		t.Reset(interval)
	}
}

// collect drops databases that no environment owns (left by a crash
// before they were recorded, or by an older previewd).
func (d *Daemon) collect(ctx context.Context) {
	d.collectKube(ctx)
	c, ok := d.db.(database.Collector)
	if !ok {
		return
	}
	keys, err := d.liveKeys(ctx)
	if err != nil {
		d.log.Warn("collecting orphaned databases", "err", err)
		return
	}
	removed, err := c.Collect(ctx, keys)
	if err != nil {
		d.log.Warn("collecting orphaned databases", "err", err)
	}
	if len(removed) > 0 {
		d.log.Info("collected orphaned databases", "names", strings.Join(removed, ","))
	}
}

// stopAll stops every environment's processes.
func (d *Daemon) stopAll(ctx context.Context) {
	live, err := d.store.Live(ctx)
	if err != nil {
		return
	}
	for _, e := range live {
		d.rt.Stop(ctx, e.Key)
	}
}
