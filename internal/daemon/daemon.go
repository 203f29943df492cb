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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/database/postgres"
	"github.com/previewd/previewd/internal/database/sqlite"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/events"
	"github.com/previewd/previewd/internal/forge/git"
	gitcache "github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/reconcile"
	"github.com/previewd/previewd/internal/runtime"
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
	// ends (serve --stop-apps-on-exit, previewd demo), as does the config's
	// runtime.local.stopAppsOnExit. Without either they keep running and
	// are adopted by the next start.
	StopOnExit bool
	// Ready, if set, is called once the HTTP server listens.
	Ready func(addr string)
}

// Daemon is a running previewd.
type Daemon struct {
	cfg   *config.Config
	o     Options
	log   *slog.Logger
	store *store.Store
	db    database.Provider
	rt    runtime.Runtime // the one runtime: local, or kubernetes/argocd
	rec   *reconcile.Reconciler
	// events is the hub of changes that GET /api/v1/events streams.
	events *events.Hub
	// leading is set once this replica leads (at once without election).
	leading atomic.Bool
	srv     *server.Server
	reg     *prometheus.Registry
	metrics *metrics
	gh      gitHubParts
	kube    kubeParts
	// cache is the git object cache shared by the runtime and specs.
	cache *gitcache.Cache
	// closers close, in reverse order, what New opened.
	closers []func() error
}

// New builds a daemon from cfg. Nothing runs until Run. When New fails,
// what it opened is closed again.
func New(ctx context.Context, cfg *config.Config, o Options) (_ *Daemon, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{cfg: cfg, o: o, log: o.Logger, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	var st *store.Store
	if cfg.Store.Kind == "postgres" {
		st, err = store.OpenPostgres(ctx, cfg.Store.Postgres.URL)
	} else {
		st, err = store.Open(ctx, filepath.Join(cfg.DataDir, "previewd.db"))
	}
	if err != nil {
		return nil, err
	}
	d.store = st
	d.onClose(st.Close)
	if d.db, err = OpenDatabase(ctx, cfg); err != nil {
		return nil, err
	}
	if c, ok := d.db.(interface{ Close() }); ok {
		d.onClose(func() error { c.Close(); return nil })
	}
	src, err := openSource(cfg, o.Logger)
	if err != nil {
		return nil, err
	}
	if d.gh, err = d.gitHub(ctx, src); err != nil {
		return nil, err
	}
	d.cache = objectCache(cfg)
	if d.rt, err = d.openRuntime(src); err != nil {
		return nil, err
	}
	life := cfg.Lifecycle.Policy()
	d.metrics = newMetrics(ctx, d.reg, st, life.Rates, o.Logger)
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.events = events.New(events.Options{})
	d.onClose(d.events.Close)
	d.rec = reconcile.New(reconcile.Options{
		Store:        st,
		Source:       src,
		Database:     d.db,
		Runtime:      d.rt,
		Notifiers:    append([]reconcile.Notifier{d.metrics, d.events}, d.gh.notifiers()...),
		URL:          cfg.EnvURL,
		Workers:      cfg.Concurrency,
		MaxRestarts:  cfg.Runtime.Local.MaxRestarts,
		PollInterval: cfg.Forge.PollInterval(),
		Lifecycle:    life,
		Rehearsal: reconcile.Rehearsal{Enabled: cfg.Database.Rehearsal.On(), FailOn: cfg.Database.Rehearsal.Rules(),
			RehearseOptions: database.RehearseOptions{LockTimeout: cfg.Database.Rehearsal.LockTimeout.Duration, StatementTimeout: cfg.Database.Rehearsal.StatementTimeout.Duration}},
		SeedPath: seedPath(cfg),
		Audit:    st.AddAudit,
		Specs:    d.openSpecs(src),
		Logger:   o.Logger,
	})
	key, err := sessionKey(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	authn, err := openAuth(ctx, cfg, st, key)
	if err != nil {
		return nil, err
	}
	previews := openPreviews(cfg, key)
	so := server.Options{
		Auth:         authn,
		Previews:     previews,
		DashboardURL: cfg.SigninURL(),
		MetricsToken: cfg.Auth.Metrics == "token",
		Store:        st,
		Domain:       cfg.Domain,
		Plugin:       d.kube.plugin,
		Redeploy:     d.rec.Redeploy,
		ResetDB:      d.rec.ResetDB,
		DBTier:       d.rec.AskTier,
		Resync:       d.rec.Resync,
		Down:         d.rec.Down,
		Up:           d.rec.Up,
		Sleep:        d.rec.Sleep,
		Wake:         d.rec.Wake,
		Touch:        d.rec.Touch,
		WakeTimeout:  life.WakeTimeout,
		Extend:       d.rec.Extend,
		Keep:         d.rec.Keep,
		Rates:        life.Rates,
		Events:       d.events,
		Revoke:       d.gh.revoke,
		SourceStatus: d.rec.SourceStatus,
		Webhooks:     d.gh.webhooks(),
		Gatherer:     d.reg,
		Version:      o.Version,
		Logger:       o.Logger,
	}
	if l, ok := d.rt.(runtime.Logs); ok {
		so.Logs = l
	}
	if f, ok := d.rt.(runtime.Follower); ok {
		so.Follower = f
	}
	if t, ok := d.db.(interface{ Names() []string }); ok {
		so.DBTiers = t.Names() // database.Tiered: the dashboard offers them
	}
	if sz, ok := d.db.(database.Sizer); ok {
		so.DatabaseSize = func(ctx context.Context, key string) (int64, error) {
			t := database.Target{Key: key, Production: key == env.ProductionKey}
			// A tiered provider sizes the tier the database was made with.
			if r, err := st.GetRecord(ctx, key); err == nil && !t.Production {
				t.Tier = r.DBTier
			}
			return sz.Size(ctx, t)
		}
	}
	rd := readiness{synced: d.synced}
	if r, ok := d.rt.(runtime.Readiness); ok {
		rd.rt = r
	}
	so.Readiness = rd
	if r, ok := d.rt.(runtime.Router); ok {
		so.Router = r
	}
	if d.kube.rt != nil {
		// Preview hosts routed through previewd (runtime.kubernetes.proxy).
		if r, ok := d.kube.rt.Router(); ok {
			so.Router = r
			d.onClose(r.Close)
		}
	}
	d.srv = server.New(so)
	return d, nil
}

// onClose pushes f on the stack that close runs.
func (d *Daemon) onClose(f func() error) { d.closers = append(d.closers, f) }

// close closes what New opened, last opened first.
func (d *Daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		if err := d.closers[i](); err != nil {
			d.log.Warn("closing", "err", err)
		}
	}
	d.closers = nil
}

// openRuntime builds the one runtime the config asks for.
func (d *Daemon) openRuntime(src reconcile.Source) (runtime.Runtime, error) {
	cfg := d.cfg
	if isKube(cfg) {
		var err error
		if d.kube, err = openKube(cfg, d.store, d.synced, d.log, d.cache, d.gh.gitEnv, production(src)); err != nil {
			return nil, err
		}
		return d.kube.rt, nil
	}
	rt, err := local.New(local.Options{
		Dir:          cfg.DataDir,
		Build:        cfg.Runtime.Local.Build,
		Migrate:      cfg.Migrate,
		Run:          cfg.Runtime.Local.Run,
		Processes:    localProcesses(cfg.Runtime.Local),
		HealthPath:   cfg.Runtime.Local.HTTPProcess().HealthPath,
		StartTimeout: cfg.Runtime.Local.StartTimeout.Duration,
		StepTimeout:  cfg.Runtime.Local.BuildTimeout.Duration,
		Env:          cfg.Runtime.Local.Env,
		InheritEnv:   cfg.Runtime.Local.InheritEnv,
		// Processes start only once Run runs, after d.rec is set.
		OnExit: func(key string) { d.rec.Exited(key) },
		GitEnv: d.gh.gitEnv,
		Cache:  d.cache,
		Logger: d.log,

		RequireLoopback: cfg.Previews.RequireLoopback,
		Caching:         localCaching(cfg.Runtime.Local.Caching),
	}, d.store)
	if err != nil {
		return nil, err
	}
	return rt, nil
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

// OpenDatabase returns the configured database provider of serve.
func OpenDatabase(ctx context.Context, cfg *config.Config) (database.Provider, error) {
	return openDatabase(ctx, cfg, "")
}

// OpenCLIDatabase returns the configured database provider of the db
// commands: the same code as serve, but what it makes is marked as the
// CLI's, which serve never collects or drops.
func OpenCLIDatabase(ctx context.Context, cfg *config.Config) (database.Provider, error) {
	return openDatabase(ctx, cfg, postgres.OwnerCLI)
}

func openDatabase(ctx context.Context, cfg *config.Config, owner string) (database.Provider, error) {
	switch cfg.Database.Kind {
	case "none":
		return database.None{}, nil
	case "sqlite":
		p, err := sqlite.New(filepath.Join(cfg.DataDir, "databases"), cfg.Database.SQLite.Seed)
		if err != nil {
			return nil, err
		}
		if owner == postgres.OwnerCLI {
			p.ForCLI()
		}
		return p, nil
	case "postgres":
		return openPostgres(ctx, cfg, owner)
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
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
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
func (d *Daemon) Resync() { d.rec.Resync() }

// Run serves until ctx ends, then closes what New opened.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.close()
	if rc, ok := d.rt.(runtime.Recoverer); ok {
		items, err := d.store.AllItems(ctx)
		if err != nil {
			return err
		}
		if err := rc.Recover(ctx, items); err != nil {
			return fmt.Errorf("recovering processes: %w", err)
		}
	}
	// A pooler that leaks session state between clients is worth a
	// warning, not a refusal (`previewd db check` exits 1 on it).
	LogPoolingCheck(ctx, d.db, d.log)
	ln := d.o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", d.cfg.Listen); err != nil {
			return fmt.Errorf("listening on %s: %w", d.cfg.Listen, err)
		}
	}
	hs := httpServer(d.srv, idleTimeout)
	// Streams never go idle: end them when shutting down begins, so
	// Shutdown does not wait its whole time for them.
	hs.RegisterOnShutdown(func() { d.events.Close() })
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.gh.start(ctx)
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
		if cerr := hs.Close(); cerr != nil {
			d.log.Warn("closing the HTTP server", "err", cerr)
		}
		wg.Wait()
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		whenLeading(ctx, leading, func(ctx context.Context) {
			d.leading.Store(true)
			d.rec.Run(ctx)
		})
	}()
	if every := d.refreshEvery(); every > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			whenLeading(ctx, leading, func(ctx context.Context) { d.refreshTemplates(ctx, every) })
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		warnPublicConnect(ctx, d.db, d.log)
	}()
	d.log.Info("serving", "addr", ln.Addr().String(), "dataDir", d.cfg.DataDir, "forge", d.cfg.Forge.Kind, "runtime", d.cfg.Runtime.Kind, "database", d.cfg.Database.Kind)
	if d.o.Ready != nil {
		d.o.Ready(ln.Addr().String())
	}
	<-ctx.Done()
	// Shutting down outlives ctx, for a bounded time.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		d.log.Warn("shutting down the HTTP server", "err", err)
	}
	wg.Wait()
	d.gh.wait()
	d.leaveOrStop(context.WithoutCancel(ctx), d.o.StopOnExit || d.cfg.Runtime.Local.StopAppsOnExit)
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

// leaveOrStop, as previewd ends, stops every environment's processes
// when stop is set (serve --stop-apps-on-exit, runtime.local.stopAppsOnExit,
// demo), all at once, each SIGTERM then SIGKILL after the runtime's grace
// period, and waits for them; otherwise it leaves them running for the
// next previewd to adopt. Either way it logs how many apps run. Only a
// runtime whose apps previewd stops (a runtime.Stopper: local) has any.
func (d *Daemon) leaveOrStop(ctx context.Context, stop bool) {
	st, ok := d.rt.(runtime.Stopper)
	if !ok {
		return
	}
	// Stopping gets long enough for SIGTERM, the grace period and SIGKILL.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	live, err := d.store.Live(ctx)
	if err != nil {
		d.log.Warn("listing environments to stop", "err", err)
		return
	}
	var keys []string
	for _, e := range live {
		if running, _, err := d.rt.Running(ctx, e.Key); err == nil && running {
			keys = append(keys, e.Key)
		}
	}
	if !stop {
		d.log.Info("leaving apps running for adoption by the next previewd", "apps", len(keys))
		return
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	// Every live one is stopped (one with a process that exited may still
	// have others); the count is of those that ran.
	for _, e := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := st.Stop(ctx, e.Key); err != nil {
				failed.Add(1)
				d.log.Warn("stopping", "env", e.Key, "err", err)
			}
		}()
	}
	wg.Wait()
	d.log.Info("stopped apps on exit", "apps", len(keys), "failed", failed.Load())
}

// localProcesses is runtime.local.processes for the local runtime; nil
// for the one process of runtime.local.run.
func localProcesses(l config.Local) []local.Process {
	if len(l.Processes) == 0 {
		return nil
	}
	var out []local.Process
	for _, p := range l.AppProcesses() {
		out = append(out, local.Process{Name: p.Name, Run: p.Run, HTTP: p.HTTP})
	}
	return out
}

// synced reports whether the store can be trusted to list every
// environment the forge wants: once this replica has reconciled every key
// of its first listing. A replica that does not lead reads a shared store
// that the leader keeps, so it is synced as it is.
func (d *Daemon) synced() bool {
	select {
	case <-d.rec.Reconciled():
		return true
	default:
	}
	return d.cfg.Store.Kind == "postgres" && !d.leading.Load()
}

// readiness is /readyz: the first reconcile is done (see synced) and what
// the runtime depends on answers.
type readiness struct {
	synced func() bool
	rt     runtime.Readiness
}

func (r readiness) Ready(ctx context.Context) error {
	if !r.synced() {
		return errors.New("the first reconcile of every environment is not done yet")
	}
	if r.rt != nil {
		return r.rt.Ready(ctx)
	}
	return nil
}

// seedPath is the seed the reconciler runs in fresh databases: postgres's
// SQL file (SQLite's seed is a database file its provider copies).
func seedPath(cfg *config.Config) string {
	if cfg.Database.Kind != "postgres" {
		return ""
	}
	return cfg.Database.Postgres.Seed
}

// refreshEvery is database.postgres.refreshTemplate.every, or 0.
func (d *Daemon) refreshEvery() time.Duration {
	if d.cfg.Database.Kind != "postgres" || d.cfg.Database.Postgres.RefreshTemplate == nil {
		return 0
	}
	return d.cfg.Database.Postgres.RefreshTemplate.Every.Duration
}

// refreshTemplates refreshes the template from production, masked, every
// period while this replica leads; a failed refresh keeps the old
// template, is logged, and is tried again at the next tick.
func (d *Daemon) refreshTemplates(ctx context.Context, every time.Duration) {
	p, ok := pgProvider(d.db)
	if !ok {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = p.ScheduledRefresh(ctx) // it logs what happened
		}
	}
}
