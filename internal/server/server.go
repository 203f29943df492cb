package server

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/events"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// Store is what the server reads.
type Store interface {
	Live(ctx context.Context) ([]env.Environment, error)
	Get(ctx context.Context, key string) (env.Environment, error)
	Events(ctx context.Context, key string, limit int) ([]env.Event, error)
	Items(ctx context.Context, key string) ([]env.Item, error)
	AddAudit(ctx context.Context, e store.AuditEntry) error
	Audit(ctx context.Context, limit int, before int64) ([]store.AuditEntry, error)
	IsDown(ctx context.Context, key string) (bool, error)
	Downs(ctx context.Context) ([]store.DownMark, error)
	Trusted(ctx context.Context) ([]store.Contributor, error)
	Rehearsal(ctx context.Context, key string) (env.Rehearsal, error)
}

// Options configure the server.
type Options struct {
	Store Store
	// Domain is the base domain of preview hosts.
	Domain string
	// Router forwards a preview host's requests to its environment, when
	// the runtime serves environments through previewd (the local one);
	// nil when none does. It owns the proxying and the draining on
	// updates; the server answers only for keys it does not serve.
	Router runtime.Router
	// Redeploy asks the reconciler to try an environment's SHA again;
	// Resync asks for every source to be listed now. The server never
	// writes an environment's state itself.
	Redeploy func(key string)
	Resync   func()
	// ResetDB asks for an environment's fresh database (reset-db); nil
	// when the database cannot be reset.
	ResetDB func(key string)
	// DBTier chooses an environment's database tier ("" or "default":
	// the configured one); an *env.TierError refuses it. Nil: refused as
	// unavailable.
	DBTier func(ctx context.Context, key, tier string) (env.TierChoice, error)
	// DBTiers are the tiers offered, the default first; the dashboard
	// offers them when DBTier is set. Empty: one tier.
	DBTiers []string
	// Down puts an environment down on actor's request (removed, and
	// kept down across pushes and restarts); Up brings it back and
	// reports whether it was down. Nil: the actions answer 503.
	Down func(ctx context.Context, key, actor string) error
	Up   func(ctx context.Context, key string) (bool, error)
	// Revoke ends a fork contributor's trust, as /preview revoke does,
	// and reports whether they were trusted. Nil when no forge keeps
	// trusted contributors (the action answers 503).
	Revoke func(ctx context.Context, login string) (bool, error)
	// Touch records a request through the proxy as the environment's
	// activity (lifecycle.sleepAfter, ttl). It is called on every
	// proxied request of a key that serves or is being woken, so it
	// must be cheap (O(1), no I/O on the request's path). Nil: none.
	Touch func(key string)
	// Wake asks for a sleeping or queued environment to be started; a
	// request through the proxy for one is held until it serves (at
	// most WakeTimeout, default DefaultWakeTimeout). Nil: no wake on
	// request, such a request gets 503.
	Wake        func(key string)
	WakeTimeout time.Duration
	// SourceStatus returns when the last listing worked and the error of
	// the last one (nil when it worked).
	SourceStatus func() (time.Time, error)
	// Readiness, if set, says whether what the runtime depends on
	// answers (for /readyz).
	Readiness runtime.Readiness
	// Logs gives an environment's output (build, migrate, app); nil when
	// the runtime keeps none, and the logs answer 404.
	Logs runtime.Logs
	// Plugin, if set, is Argo CD's ApplicationSet plugin generator, at
	// POST /api/v1/getparams.execute.
	Plugin http.Handler
	// Webhooks are extra handlers mounted under /webhooks/, by path.
	Webhooks map[string]http.Handler
	// Gatherer is the metrics registry served on /metrics.
	Gatherer prometheus.Gatherer
	// Auth finds each request's principal for the API and dashboard;
	// nil: every request is an anonymous admin (an open previewd).
	// Health, webhooks (their own HMAC), Argo CD's plugin (its own
	// token) and preview hosts are not behind it.
	Auth *auth.Authenticator
	// Previews, if set, guards preview hosts (previews.access) and
	// answers ingress-nginx's forward-auth at GET /auth/preview.
	Previews *auth.Previews
	// DashboardURL is where previewd's own sign-in is reached from a
	// preview host (previews.access signin).
	DashboardURL string
	// MetricsToken puts /metrics behind a bearer token.
	MetricsToken bool
	Version      string
	Logger       *slog.Logger
	// Sleep, Extend and Keep are the reconciler's lifecycle entry points
	// (sleep on actor's request; keep from expiring for d, answering when
	// it now expires, zero for never; pin or unpin), beside Wake above,
	// which the API's wake also calls. Nil: the actions answer 503.
	Sleep  func(ctx context.Context, key, actor string) error
	Extend func(ctx context.Context, key string, d time.Duration) (time.Time, error)
	Keep   func(ctx context.Context, key string, on bool) error
	// Rates price each environment's usage (lifecycle.cost) wherever the
	// API and the dashboard show it.
	Rates env.Rates
	// Events is the hub of environment changes that GET /api/v1/events
	// streams; nil: it answers 503.
	Events *events.Hub
	// Follower streams an environment's output as it is written
	// (logs?follow=true); nil when the runtime cannot, and such a request
	// answers 404.
	Follower runtime.Follower
	// DatabaseSize, if set, says how many bytes an environment's database
	// takes, for its page; nil or an error: the page shows its kind and
	// name only.
	DatabaseSize func(ctx context.Context, key string) (int64, error)
}

// Server serves the API, dashboard, webhooks, metrics and preview proxy.
type Server struct {
	o    Options
	mux  *http.ServeMux
	tmpl *template.Template
	// cop refuses cross-origin browser requests that change state.
	cop *http.CrossOriginProtection
	// wakes are the keys this server woke on request (wake.go).
	wakes wakes
	// assets are the dashboard's script and styles (dashboard.go).
	assets assets
	// frames are the event stream's encoded changes (events.go).
	frames frames
}

//go:embed templates
var templates embed.FS

// New returns a server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rates.Set() && o.Store != nil {
		o.Store = pricedStore{Store: o.Store, rates: o.Rates}
	}
	s := &Server{o: o, mux: http.NewServeMux(), cop: http.NewCrossOriginProtection(), assets: newAssets()}
	s.tmpl = template.Must(template.New("").Funcs(funcs).ParseFS(templates, "templates/*.html"))
	s.mux.Handle("GET /api/v1/environments", s.api(auth.Viewer, s.listEnvironments))
	s.mux.Handle("GET /api/v1/environments/{key}", s.api(auth.Viewer, s.getEnvironment))
	s.mux.Handle("POST /api/v1/environments/{key}/redeploy", s.api(auth.Operator, s.redeploy))
	s.mux.Handle("POST /api/v1/environments/{key}/reset-db", s.api(auth.Operator, s.resetDB))
	s.mux.Handle("POST /environments/{key}/reset-db", s.page(auth.Operator, s.resetPage))
	s.mux.Handle("POST /api/v1/environments/{key}/db-tier", s.api(auth.Operator, s.dbTier))
	s.mux.Handle("POST /environments/{key}/db-tier", s.page(auth.Operator, s.dbTierPage))
	s.mux.Handle("POST /api/v1/environments/{key}/down", s.api(auth.Admin, s.down))
	s.mux.Handle("POST /api/v1/environments/{key}/up", s.api(auth.Operator, s.up))
	for _, a := range []string{ActionSleep, ActionWake, ActionExtend, ActionKeep, ActionUnkeep} {
		s.mux.Handle("POST /api/v1/environments/{key}/"+a, s.api(auth.Operator, s.lifecycleAPI(a)))
		s.mux.Handle("POST /environments/{key}/"+a, s.page(auth.Operator, s.lifecyclePage(a)))
	}
	s.mux.Handle("GET /api/v1/environments/{key}/logs", s.api(auth.Viewer, s.logs))
	s.mux.Handle("GET /api/v1/environments/{key}/rehearsal", s.api(auth.Viewer, s.rehearsal))
	s.mux.Handle("GET /api/v1/trusted", s.api(auth.Viewer, s.trusted))
	s.mux.Handle("DELETE /api/v1/trusted/{user}", s.api(auth.Operator, s.revoke))
	s.mux.Handle("POST /api/v1/trusted/{user}/revoke", s.api(auth.Operator, s.revoke))
	s.mux.Handle("POST /api/v1/sync", s.api(auth.Operator, s.sync))
	s.mux.Handle("GET /api/v1/audit", s.api(auth.Viewer, s.audit))
	s.mux.Handle("GET /api/v1/events", s.api(auth.Viewer, s.events))
	s.mux.Handle("GET /api/v1/whoami", s.api(auth.None, s.whoami))
	if o.Plugin != nil {
		s.mux.Handle("POST /api/v1/getparams.execute", o.Plugin)
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if o.Gatherer != nil {
		s.mux.Handle("GET /metrics", s.metrics(promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})))
	}
	for path, h := range o.Webhooks {
		s.mux.Handle("POST /webhooks/"+path, h)
	}
	s.mux.Handle("GET /static/", s.assets.h)
	s.mux.Handle("GET /{$}", s.page(auth.Viewer, s.dashboard))
	s.mux.Handle("GET /environments/{key}", s.page(auth.Viewer, s.environmentPage))
	s.mux.Handle("POST /environments/{key}/redeploy", s.page(auth.Operator, s.redeployPage))
	s.mux.Handle("POST /environments/{key}/down", s.page(auth.Admin, s.downPage))
	s.mux.Handle("POST /environments/{key}/up", s.page(auth.Operator, s.upPage))
	s.mux.Handle("POST /trusted/{user}/revoke", s.page(auth.Operator, s.revokePage))
	s.mux.HandleFunc("GET /auth/preview", s.forwardAuth)
	if o.Previews != nil && o.Previews.Access() == auth.PreviewSignIn {
		s.mux.Handle("GET /preview/signin", s.page(auth.Viewer, s.signinForPreview))
	}
	if o.Auth != nil && o.Auth.Sessions() != nil {
		s.mux.HandleFunc("GET /signin", s.getSignin)
		s.mux.HandleFunc("POST /signin", s.postSignin)
		s.mux.Handle("POST /signout", s.page(auth.None, s.signout))
		for _, p := range o.Auth.Providers() {
			s.mux.HandleFunc("GET /signin/"+p.Name(), s.beginSignin(p))
			s.mux.HandleFunc("GET /signin/"+p.Name()+"/callback", s.finishSignin(p))
		}
	}
	return s
}

// ServeHTTP sends preview hosts to the proxy and everything else to the
// API and dashboard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if key, ok := s.previewKey(r.Host); ok {
		s.servePreview(w, r, key)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// previewKey returns the key of a host <key>.<domain>[:port].
func (s *Server) previewKey(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	suffix := "." + strings.ToLower(s.o.Domain)
	if s.o.Domain == "" || !strings.HasSuffix(host, suffix) {
		return "", false
	}
	key := strings.TrimSuffix(host, suffix)
	if key == "" || strings.Contains(key, ".") {
		return "", false
	}
	return key, true
}

// servePreview checks a protected preview's credentials (see
// guardPreview), then hands the request to the Router (after Touch); a
// key it does not serve is woken if it sleeps or is queued, and the
// request held until it serves (see wake); otherwise it gets 404
// (unknown, with the live environments listed) or 503 (known but not
// serving yet).
func (s *Server) servePreview(w http.ResponseWriter, r *http.Request, key string) {
	if !s.guardPreview(w, r, key) {
		return
	}
	if s.o.Router != nil && env.ValidKey(key) {
		if h, ok := s.o.Router.Proxy(key); ok {
			if s.o.Touch != nil {
				s.o.Touch(key)
			}
			h.ServeHTTP(w, r)
			return
		}
		if s.o.Wake != nil && s.wake(w, r, key) {
			return
		}
	}
	live, err := s.o.Store.Live(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var this *env.Environment
	for i := range live {
		if live[i].Key == key {
			this = &live[i]
		}
	}
	status := http.StatusNotFound
	if this != nil {
		// Known but not serving (yet): building, failed, ...
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "2")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	s.tmpl.ExecuteTemplate(w, "notfound.html", map[string]any{"Key": key, "Env": this, "Live": live, "Domain": s.o.Domain})
}

type sourceStatus struct {
	OK       bool       `json:"ok"`
	Error    string     `json:"error,omitempty"`
	LastSync *time.Time `json:"lastSync,omitempty"`
}

func (s *Server) sourceStatus() sourceStatus {
	if s.o.SourceStatus == nil {
		return sourceStatus{OK: true}
	}
	last, err := s.o.SourceStatus()
	st := sourceStatus{OK: err == nil}
	if err != nil {
		st.Error = err.Error()
	}
	if !last.IsZero() {
		st.LastSync = &last
	}
	return st
}

func (s *Server) listEnvironments(w http.ResponseWriter, r *http.Request) {
	live, err := s.o.Store.Live(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if live == nil {
		live = []env.Environment{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"environments": live, "source": s.sourceStatus()})
}

// environmentView is an environment as the API shows one: with whether
// it is down on request.
type environmentView struct {
	env.Environment
	Down bool `json:"down,omitempty"`
}

func (s *Server) getEnvironment(w http.ResponseWriter, r *http.Request) {
	e, err := s.environment(r.Context(), r.PathValue("key"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	down, err := s.o.Store.IsDown(r.Context(), e.Key)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, environmentView{Environment: e, Down: down})
}

func (s *Server) environment(ctx context.Context, key string) (env.Environment, error) {
	if err := env.CheckKey(key); err != nil {
		return env.Environment{}, badRequest{err}
	}
	e, err := s.o.Store.Get(ctx, key)
	if err != nil {
		return e, err
	}
	if e.Events, err = s.o.Store.Events(ctx, key, 50); err != nil {
		return e, err
	}
	switch rh, err := s.o.Store.Rehearsal(ctx, key); {
	case err == nil:
		e.Rehearsal = &rh
	case !errors.Is(err, store.ErrNotFound):
		return e, err
	}
	return e, nil
}

// rehearsal answers GET /api/v1/environments/{key}/rehearsal: the latest
// migration rehearsal report, or 404 when there is none.
func (s *Server) rehearsal(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := env.CheckKey(key); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rh, err := s.o.Store.Rehearsal(r.Context(), key)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("environment %s has no migration rehearsal (none yet, or its database cannot rehearse)", key))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, rh)
}

type badRequest struct{ error }

func statusOf(err error) int {
	var br badRequest
	var un unavailable
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.As(err, &un):
		return http.StatusServiceUnavailable
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// redeploy asks the reconciler to try the environment's SHA again, even
// if it failed.
func (s *Server) redeploy(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if _, err := s.environment(r.Context(), key); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	if s.o.Redeploy == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("no reconciler runs here"))
		return
	}
	if !s.record(w, r, auth.FromContext(r.Context()), ActionRedeploy, key) {
		return
	}
	s.o.Redeploy(key)
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

// unavailable is the error of an action this server cannot carry out.
type unavailable struct{ error }

// checkReset refuses a reset-db of an environment that does not exist, of
// production, or where nothing can reset.
func (s *Server) checkReset(ctx context.Context, key string) error {
	e, err := s.environment(ctx, key)
	switch {
	case err != nil:
		return err
	case e.Production():
		return badRequest{errors.New("refusing to reset production's database")}
	case s.o.ResetDB == nil:
		return unavailable{errors.New("reset-db is not available here: the database cannot be reset, or no reconciler runs here")}
	}
	return nil
}

// resetDB asks the reconciler for a fresh database for the environment:
// built and migrated while the old one serves, then swapped in.
func (s *Server) resetDB(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := s.checkReset(r.Context(), key); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	if !s.record(w, r, auth.FromContext(r.Context()), ActionResetDB, key) {
		return
	}
	s.o.ResetDB(key)
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request) {
	if !s.record(w, r, auth.FromContext(r.Context()), ActionSync, "") {
		return
	}
	if s.o.Resync != nil {
		s.o.Resync()
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

// readyTimeout bounds /readyz's question to the runtime.
const readyTimeout = 3 * time.Second

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.o.Readiness != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.o.Readiness.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
