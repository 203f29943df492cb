package server

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/store"
)

// Audited actions.
const (
	ActionRedeploy = "redeploy"
	ActionResetDB  = "reset-db"
	ActionDBTier   = "db-tier"
	ActionSync     = "sync"
	ActionSignIn   = "sign-in"
	ActionSignOut  = "sign-out"
	ActionDown     = "down"
	ActionUp       = "up"
	ActionRevoke   = "revoke"
)

// maxFormBytes bounds a sign-in form.
const maxFormBytes = 8 << 10

// authenticate returns r's principal; without an Authenticator every
// request is an anonymous admin (an open previewd).
func (s *Server) authenticate(r *http.Request) (auth.Principal, error) {
	if s.o.Auth == nil {
		return auth.Principal{Name: auth.Anonymous, Kind: auth.KindAnonymous, Role: auth.Admin}, nil
	}
	return s.o.Auth.Authenticate(r)
}

// api protects an API route: cross-origin browser requests are refused
// (403) before anything else, a request without acceptable credentials
// gets 401 with WWW-Authenticate, one whose role is too weak 403.
func (s *Server) api(need auth.Role, h http.HandlerFunc) http.Handler {
	return s.protect(need, false, h)
}

// page protects a dashboard route like api, except that a visitor who is
// not signed in (or whose cookie cannot be trusted) gets the sign-in page,
// with 401, and never the page.
func (s *Server) page(need auth.Role, h http.HandlerFunc) http.Handler {
	return s.protect(need, true, h)
}

// sameOrigin refuses (403) a browser request from another origin, a
// preview's host included, and reports whether r may go on.
func (s *Server) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if err := s.cop.Check(r); err != nil {
		s.o.Logger.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path, "remote", remote(r))
		writeError(w, http.StatusForbidden, errors.New("cross-origin request refused"))
		return false
	}
	return true
}

func (s *Server) protect(need auth.Role, page bool, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.sameOrigin(w, r) {
			return
		}
		p, err := s.authenticate(r)
		if err != nil {
			s.o.Logger.Warn("request refused", "method", r.Method, "path", r.URL.Path, "remote", remote(r), "reason", reason(err))
			if errors.Is(err, auth.ErrBadSession) && s.o.Auth.Sessions() != nil {
				s.o.Auth.Sessions().Clear(w, r)
			}
			s.unauthorized(w, r, page, reason(err))
			return
		}
		if !p.Role.Allows(need) {
			if p.Anonymous() {
				s.unauthorized(w, r, page, "")
				return
			}
			writeError(w, http.StatusForbidden, errors.New(p.Name+" is "+p.Role.String()+"; this needs "+need.String()))
			return
		}
		h(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// stillAllowed reports whether r's credentials still give role need. An
// open stream asks at each heartbeat, so signing out, a revoked or an
// expired session ends the streams it opened too, within a heartbeat.
func (s *Server) stillAllowed(r *http.Request, need auth.Role) bool {
	p, err := s.authenticate(r)
	if err == nil && p.Role.Allows(need) {
		return true
	}
	s.o.Logger.Info("stream ended: its credentials no longer hold", "path", r.URL.Path, "remote", remote(r), "reason", reason(err))
	return false
}

// reason is what may be said of a refused credential: never its value.
func reason(err error) string {
	switch {
	case errors.Is(err, auth.ErrUnknownToken) && !errors.Is(err, auth.ErrBadSession):
		return auth.ErrUnknownToken.Error()
	case errors.Is(err, auth.ErrExpired):
		return "session expired"
	case errors.Is(err, auth.ErrRevoked):
		return "session signed out"
	case errors.Is(err, auth.ErrBadSession):
		return "invalid session"
	case errors.Is(err, auth.ErrNotBearer):
		return auth.ErrNotBearer.Error()
	}
	return "unauthorized"
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, page bool, why string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="previewd"`)
	if page && r.Method == http.MethodGet {
		s.signinPage(w, r, http.StatusUnauthorized, why)
		return
	}
	if why == "" {
		why = "sign in or send Authorization: Bearer <token>"
	}
	writeError(w, http.StatusUnauthorized, errors.New(why))
}

// metrics guards /metrics with a bearer token when auth.metrics is token.
func (s *Server) metrics(h http.Handler) http.Handler {
	if !s.o.MetricsToken {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil || p.Kind != auth.KindToken || p.Session {
			if err != nil {
				s.o.Logger.Warn("request refused", "method", r.Method, "path", r.URL.Path, "remote", remote(r), "reason", reason(err))
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="previewd"`)
			writeError(w, http.StatusUnauthorized, errors.New("/metrics needs Authorization: Bearer <token>"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// record writes r's action to the audit trail (and, with a key, the
// environment's history). The action is done only once it is recorded.
func (s *Server) record(w http.ResponseWriter, r *http.Request, p auth.Principal, action, key string) bool {
	return s.recordDetail(w, r, p, action, key, "")
}

// recordDetail is record with a detail (e.g. whom an action is about).
func (s *Server) recordDetail(w http.ResponseWriter, r *http.Request, p auth.Principal, action, key, detail string) bool {
	via := auth.ViaDashboard
	if strings.HasPrefix(r.URL.Path, "/api/") {
		via = auth.ViaAPI
	}
	err := s.o.Store.AddAudit(r.Context(), store.AuditEntry{Actor: p.Name, Action: action, Via: string(via), Key: key, Detail: detail, Remote: remote(r)})
	if err != nil {
		s.o.Logger.Error("recording an action", "action", action, "env", key, "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("the action could not be recorded, so it was not done"))
		return false
	}
	return true
}

// remote is the client's address without the port.
func remote(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// audit lists the audit trail, newest first: ?limit=N (default 100, at
// most 1000) and ?before=<id> for the page after.
func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 {
		limit = 100
	}
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	entries, err := s.o.Store.Audit(r.Context(), min(limit, 1000), before)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := map[string]any{"entries": entries}
	if len(entries) == min(limit, 1000) && len(entries) > 0 {
		out["next"] = entries[len(entries)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

// whoami answers the request's principal.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, auth.FromContext(r.Context()))
}

// safeNext is where a sign-in goes back to: a path on this host only.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	next := r.URL.Query().Get("next")
	if r.URL.Path != "/signin" && !strings.HasPrefix(r.URL.Path, "/signin/") {
		next = r.URL.RequestURI()
	}
	if r.Method == http.MethodPost {
		next = r.PostFormValue("next")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, "signin.html", map[string]any{"Next": safeNext(next), "Error": msg, "Version": s.o.Version, "Providers": s.providerLinks(safeNext(next))}); err != nil {
		s.o.Logger.Error("rendering sign-in page", "err", err)
	}
}

func (s *Server) getSignin(w http.ResponseWriter, r *http.Request) {
	s.signinPage(w, r, http.StatusOK, "")
}

// postSignin signs in with an API token: a session cookie for its
// principal, then back to where the visitor was going.
func (s *Server) postSignin(w http.ResponseWriter, r *http.Request) {
	if !s.sameOrigin(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	p, ok := s.o.Auth.CheckToken(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		s.o.Logger.Warn("sign-in refused", "remote", remote(r), "reason", auth.ErrUnknownToken.Error())
		s.signinPage(w, r, http.StatusUnauthorized, "Unknown token.")
		return
	}
	if !s.record(w, r, p, ActionSignIn, "") {
		return
	}
	if _, err := s.o.Auth.Sessions().Issue(w, r, p); err != nil {
		s.o.Logger.Error("issuing a session", "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("could not sign in"))
		return
	}
	s.o.Logger.Info("signed in", "principal", p.Name, "remote", remote(r))
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

// signout ends the browser's session.
func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	p := auth.FromContext(r.Context())
	if p.Session && !s.record(w, r, p, ActionSignOut, "") {
		return
	}
	if err := s.o.Auth.SignOut(r.Context(), p); err != nil {
		s.o.Logger.Error("signing out", "principal", p.Name, "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("could not sign out"))
		return
	}
	s.o.Auth.Sessions().Clear(w, r)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// redeployPage is the dashboard's redeploy button.
func (s *Server) redeployPage(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if _, err := s.environment(r.Context(), key); err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	if s.o.Redeploy == nil {
		http.Error(w, "no reconciler runs here", http.StatusServiceUnavailable)
		return
	}
	if !s.record(w, r, auth.FromContext(r.Context()), ActionRedeploy, key) {
		return
	}
	s.o.Redeploy(key)
	http.Redirect(w, r, "/environments/"+key, http.StatusSeeOther)
}

// resetPage is the dashboard's reset-db button.
func (s *Server) resetPage(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := s.checkReset(r.Context(), key); err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	if !s.record(w, r, auth.FromContext(r.Context()), ActionResetDB, key) {
		return
	}
	s.o.ResetDB(key)
	http.Redirect(w, r, "/environments/"+key, http.StatusSeeOther)
}

// viewer is what the dashboard's templates know of the visitor.
type viewer struct {
	Name     string
	SignedIn bool
	CanAct   bool
	// CanAdmin may put environments down.
	CanAdmin bool
	// SignIn offers a sign-in link to an anonymous visitor when tokens
	// could do more.
	SignIn bool
}

func (s *Server) viewerOf(r *http.Request) viewer {
	p := auth.FromContext(r.Context())
	return viewer{Name: p.Name, SignedIn: p.Session, CanAct: p.Role.Allows(auth.Operator), CanAdmin: p.Role.Allows(auth.Admin), SignIn: s.o.Auth != nil && !s.o.Auth.Open() && p.Anonymous()}
}
