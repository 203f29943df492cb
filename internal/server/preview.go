package server

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
)

// Paths previewd answers itself on a protected preview's host.
const (
	previewSigninPath = "/.previewd/signin"
	previewTicketPath = "/.previewd/ticket"
)

// guardPreview lets r through to preview key's app (true), after
// stripping previewd's credentials, or answers it: the password page, a
// redirect to previewd's sign-in, the exchange of a sign-in ticket, or
// 401.
func (s *Server) guardPreview(w http.ResponseWriter, r *http.Request, key string) bool {
	pv := s.o.Previews
	if pv == nil {
		return true
	}
	if !pv.Protects(key == env.ProductionKey) {
		// A public host: only the bypass header is previewd's; the
		// app's own Authorization stays.
		r.Header.Del(auth.BypassHeader)
		return true
	}
	switch r.URL.Path {
	case previewSigninPath:
		s.previewSignin(w, r, key)
		return false
	case previewTicketPath:
		s.previewTicket(w, r, key)
		return false
	}
	ok, err := pv.Allow(r, key)
	if ok {
		pv.Strip(r)
		return true
	}
	why := ""
	if err != nil {
		why = reason(err)
		if errors.Is(err, auth.ErrWrongPreview) {
			why = auth.ErrWrongPreview.Error()
		}
		s.o.Logger.Warn("preview request refused", "env", key, "remote", remote(r), "reason", why)
	}
	s.previewUnauthorized(w, r, key, r.URL.RequestURI(), why)
	return false
}

// browser reports whether r is a page load by a browser.
func browser(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// previewUnauthorized answers a request without a good credential: a
// browser gets the password page or a redirect to the sign-in, anything
// else 401.
func (s *Server) previewUnauthorized(w http.ResponseWriter, r *http.Request, key, next, why string) {
	pv := s.o.Previews
	switch {
	case pv.Access() == auth.PreviewSignIn && browser(r):
		s.redirectToSignin(w, r, key, next)
	case pv.Access() == auth.PreviewPassword && browser(r):
		s.previewPage(w, r, key, http.StatusUnauthorized, next, why)
	default:
		if pv.Access() == auth.PreviewPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="preview `+key+`", charset="UTF-8"`)
		}
		if why == "" {
			why = "this preview is protected"
		}
		writeError(w, http.StatusUnauthorized, errors.New(why))
	}
}

// previewPage renders the password page.
func (s *Server) previewPage(w http.ResponseWriter, r *http.Request, key string, status int, next, msg string) {
	form, err := s.o.Previews.FormToken(key)
	if err != nil {
		writeError(w, http.StatusInternalServerError, errors.New("could not render the page"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, "preview.html", map[string]any{"Key": key, "Next": safeNext(next), "Form": form, "Error": msg}); err != nil {
		s.o.Logger.Error("rendering preview page", "err", err)
	}
}

// previewSignin is the preview host's sign-in: GET shows the password
// page (or goes to previewd's sign-in), POST checks the password and sets
// the preview cookie.
func (s *Server) previewSignin(w http.ResponseWriter, r *http.Request, key string) {
	pv := s.o.Previews
	next := r.URL.Query().Get("next")
	if next == "" {
		next = r.URL.Query().Get("rd") // ingress-nginx's auth-signin
	}
	if r.Method == http.MethodGet {
		if pv.Access() == auth.PreviewSignIn {
			s.redirectToSignin(w, r, key, safeNext(next))
			return
		}
		s.previewPage(w, r, key, http.StatusOK, next, "")
		return
	}
	if r.Method != http.MethodPost || pv.Access() != auth.PreviewPassword {
		writeError(w, http.StatusMethodNotAllowed, errors.New("method not allowed"))
		return
	}
	if !s.sameOrigin(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	next = r.PostFormValue("next")
	if !pv.CheckFormToken(r.PostFormValue("form"), key) {
		s.o.Logger.Warn("preview sign-in refused", "env", key, "remote", remote(r), "reason", "bad form token")
		s.previewPage(w, r, key, http.StatusForbidden, next, "The form expired; try again.")
		return
	}
	if !pv.CheckPassword(r.PostFormValue("password")) {
		s.o.Logger.Warn("preview sign-in refused", "env", key, "remote", remote(r), "reason", "wrong password")
		s.previewPage(w, r, key, http.StatusUnauthorized, next, "Wrong password.")
		return
	}
	if err := pv.Issue(w, r, key, ""); err != nil {
		s.o.Logger.Error("issuing a preview cookie", "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("could not sign in"))
		return
	}
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// redirectToSignin sends a browser to previewd's sign-in on the
// dashboard host, which comes back with a ticket.
func (s *Server) redirectToSignin(w http.ResponseWriter, r *http.Request, key, next string) {
	if s.o.DashboardURL == "" {
		writeError(w, http.StatusServiceUnavailable, errors.New("previews.access signin needs previewd's dashboard URL"))
		return
	}
	q := url.Values{"key": {key}, "next": {safeNext(next)}}
	http.Redirect(w, r, strings.TrimSuffix(s.o.DashboardURL, "/")+"/preview/signin?"+q.Encode(), http.StatusSeeOther)
}

// previewTicket exchanges a sign-in ticket for the preview host's own
// cookie, then goes to the clean URL.
func (s *Server) previewTicket(w http.ResponseWriter, r *http.Request, key string) {
	name, err := s.o.Previews.Redeem(r.URL.Query().Get("t"), key)
	if err != nil {
		why := reason(err)
		switch {
		case errors.Is(err, auth.ErrTicketUsed), errors.Is(err, auth.ErrWrongPreview):
			why = err.Error()
		}
		s.o.Logger.Warn("preview ticket refused", "env", key, "remote", remote(r), "reason", why)
		writeError(w, http.StatusUnauthorized, errors.New(why))
		return
	}
	if err := s.o.Previews.Issue(w, r, key, name); err != nil {
		s.o.Logger.Error("issuing a preview cookie", "err", err)
		writeError(w, http.StatusInternalServerError, errors.New("could not sign in"))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
}

// signinForPreview is the dashboard host's end of access signin: a
// signed-in viewer gets a one-time ticket and goes back to the preview.
func (s *Server) signinForPreview(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if !env.ValidKey(key) {
		writeError(w, http.StatusBadRequest, errors.New("bad key"))
		return
	}
	p := auth.FromContext(r.Context())
	if p.Anonymous() {
		s.signinPage(w, r, http.StatusUnauthorized, "")
		return
	}
	t, err := s.o.Previews.Ticket(key, p)
	if err != nil {
		writeError(w, http.StatusForbidden, errors.New(p.Name+" may not open previews"))
		return
	}
	host := key + "." + s.o.Domain
	if _, port, err := net.SplitHostPort(r.Host); err == nil {
		host = net.JoinHostPort(host, port)
	}
	scheme := "http"
	if auth.OverTLS(r) {
		scheme = "https"
	}
	q := url.Values{"t": {t}, "next": {safeNext(r.URL.Query().Get("next"))}}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, scheme+"://"+host+previewTicketPath+"?"+q.Encode(), http.StatusSeeOther)
}

// forwardAuth answers ingress-nginx's auth-url subrequest for a preview
// it serves: 200 to let the request through, 401 to refuse it. The
// original host comes in X-Forwarded-Host (or X-Original-URL); the
// original request's cookies and Authorization come as they were.
func (s *Server) forwardAuth(w http.ResponseWriter, r *http.Request) {
	host := r.Header.Get("X-Forwarded-Host")
	if host == "" {
		if u, err := url.Parse(r.Header.Get("X-Original-URL")); err == nil {
			host = u.Host
		}
	}
	key, ok := s.previewKey(host)
	if !ok {
		writeError(w, http.StatusUnauthorized, errors.New("not a preview host"))
		return
	}
	pv := s.o.Previews
	if pv == nil || !pv.Protects(key == env.ProductionKey) {
		w.WriteHeader(http.StatusOK)
		return
	}
	allowed, err := pv.Allow(r, key)
	if !allowed {
		if err != nil {
			s.o.Logger.Warn("preview request refused", "env", key, "remote", remote(r), "reason", reason(err))
		}
		if pv.Access() == auth.PreviewPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="preview `+key+`", charset="UTF-8"`)
		}
		writeError(w, http.StatusUnauthorized, errors.New("this preview is protected"))
		return
	}
	w.WriteHeader(http.StatusOK)
}
