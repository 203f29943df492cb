package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
)

// errProduction refuses to put production down.
var errProduction = errors.New("production cannot be put down")

// errNoReconciler answers an action when no reconciler runs here.
var errNoReconciler = errors.New("no reconciler runs here")

// downEnv checks, audits and asks for key to be put down; it returns the
// status to answer and, unless accepted, why.
func (s *Server) downEnv(w http.ResponseWriter, r *http.Request, key string) (int, error) {
	e, err := s.environment(r.Context(), key)
	if err != nil {
		return statusOf(err), err
	}
	switch {
	case e.Key == env.ProductionKey || e.Production():
		return http.StatusConflict, errProduction
	case s.o.Down == nil:
		return http.StatusServiceUnavailable, errNoReconciler
	}
	p := auth.FromContext(r.Context())
	if !s.record(w, r, p, ActionDown, key) {
		return 0, nil
	}
	if err := s.o.Down(r.Context(), key, p.Name); err != nil {
		s.o.Logger.Error("putting an environment down", "env", key, "err", err)
		return http.StatusInternalServerError, err
	}
	return http.StatusAccepted, nil
}

// upEnv checks, audits and asks for key to be brought up again.
func (s *Server) upEnv(w http.ResponseWriter, r *http.Request, key string) (int, bool, error) {
	if _, err := s.environment(r.Context(), key); err != nil {
		return statusOf(err), false, err
	}
	if s.o.Up == nil {
		return http.StatusServiceUnavailable, false, errNoReconciler
	}
	if !s.record(w, r, auth.FromContext(r.Context()), ActionUp, key) {
		return 0, false, nil
	}
	was, err := s.o.Up(r.Context(), key)
	if err != nil {
		s.o.Logger.Error("bringing an environment up", "env", key, "err", err)
		return http.StatusInternalServerError, false, err
	}
	return http.StatusAccepted, was, nil
}

// down removes an environment whose change is still open and keeps it
// removed until up (admin).
func (s *Server) down(w http.ResponseWriter, r *http.Request) {
	status, err := s.downEnv(w, r, r.PathValue("key"))
	switch {
	case status == 0:
	case err != nil:
		writeError(w, status, err)
	default:
		writeJSON(w, status, map[string]string{"status": "accepted"})
	}
}

// up deploys an environment put down again (operator).
func (s *Server) up(w http.ResponseWriter, r *http.Request) {
	status, was, err := s.upEnv(w, r, r.PathValue("key"))
	switch {
	case status == 0:
	case err != nil:
		writeError(w, status, err)
	case !was:
		writeJSON(w, status, map[string]string{"status": "accepted", "note": "it was not down"})
	default:
		writeJSON(w, status, map[string]string{"status": "accepted"})
	}
}

// downPage and upPage are the dashboard's buttons.
func (s *Server) downPage(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	status, err := s.downEnv(w, r, key)
	backTo(w, r, "/environments/"+key, status, err)
}

func (s *Server) upPage(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	status, _, err := s.upEnv(w, r, key)
	backTo(w, r, "/environments/"+key, status, err)
}

// backTo ends a button's request: the error, or back to the page at
// path. A status of 0 means the action answered already.
func backTo(w http.ResponseWriter, r *http.Request, path string, status int, err error) {
	switch {
	case status == 0:
	case err != nil:
		http.Error(w, err.Error(), status)
	default:
		http.Redirect(w, r, path, http.StatusSeeOther)
	}
}

// trusted lists the trusted fork contributors.
func (s *Server) trusted(w http.ResponseWriter, r *http.Request) {
	list, err := s.o.Store.Trusted(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if list == nil {
		writeJSON(w, http.StatusOK, map[string]any{"trusted": []any{}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"trusted": list})
}

// revokeUser audits and ends user's trust, as /preview revoke does.
func (s *Server) revokeUser(w http.ResponseWriter, r *http.Request) (int, bool, error) {
	user := strings.TrimPrefix(r.PathValue("user"), "@")
	if !validLogin(user) {
		return http.StatusBadRequest, false, errors.New("not a GitHub login")
	}
	if s.o.Revoke == nil {
		return http.StatusServiceUnavailable, false, errors.New("no forge keeps trusted contributors here")
	}
	if !s.recordDetail(w, r, auth.FromContext(r.Context()), ActionRevoke, "", "@"+user) {
		return 0, false, nil
	}
	was, err := s.o.Revoke(r.Context(), user)
	if err != nil {
		s.o.Logger.Error("revoking a trusted contributor", "err", err)
		return http.StatusInternalServerError, false, err
	}
	return http.StatusOK, was, nil
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	status, was, err := s.revokeUser(w, r)
	switch {
	case status == 0:
	case err != nil:
		writeError(w, status, err)
	case !was:
		writeError(w, http.StatusNotFound, errors.New("not a trusted contributor"))
	default:
		writeJSON(w, status, map[string]string{"status": "revoked"})
	}
}

func (s *Server) revokePage(w http.ResponseWriter, r *http.Request) {
	status, _, err := s.revokeUser(w, r)
	backTo(w, r, "/", status, err)
}

// validLogin reports whether v can be a GitHub login: letters, digits
// and single hyphens, at most 39.
func validLogin(v string) bool {
	if v == "" || len(v) > 39 || strings.HasPrefix(v, "-") || strings.HasSuffix(v, "-") {
		return false
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
