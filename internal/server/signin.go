package server

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/previewd/previewd/internal/auth"
)

// providerLink is a sign-in button on the sign-in page.
type providerLink struct {
	Name, Label, URL string
}

func (s *Server) providerLinks(next string) []providerLink {
	if s.o.Auth == nil {
		return nil
	}
	var out []providerLink
	for _, p := range s.o.Auth.Providers() {
		u := "/signin/" + p.Name()
		if next != "/" {
			u += "?next=" + url.QueryEscape(next)
		}
		out = append(out, providerLink{Name: p.Name(), Label: p.Label(), URL: u})
	}
	return out
}

// beginSignin sends the browser to the provider p.
func (s *Server) beginSignin(p auth.Provider) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := p.Begin(w, r, safeNext(r.URL.Query().Get("next"))); err != nil {
			s.o.Logger.Error("starting a sign-in", "provider", p.Name(), "err", err)
			writeError(w, http.StatusInternalServerError, errors.New("could not start the sign-in"))
		}
	}
}

// finishSignin is p's callback: a session for the principal p vouches
// for, recorded in the audit trail, then back to a path on this host.
// A state mismatch or an untrusted answer is 401, a real identity the
// config does not let in 403; neither gets a session.
func (s *Server) finishSignin(p auth.Provider) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pr, next, err := p.Finish(w, r)
		if err != nil {
			status, msg := http.StatusUnauthorized, "The sign-in could not be completed; please try again."
			switch {
			case errors.Is(err, auth.ErrNotAllowed):
				status, msg = http.StatusForbidden, "You signed in, but this previewd does not let your account in. Ask its admins to allow your organisation, team, group or domain."
			case errors.Is(err, auth.ErrState):
				msg = "The sign-in expired or did not start here; please start again."
			}
			// The reason names no secret: state, code and tokens stay out.
			s.o.Logger.Warn("sign-in refused", "provider", p.Name(), "remote", remote(r), "reason", err.Error())
			s.signinPage(w, r, status, msg)
			return
		}
		if !s.record(w, r, pr, ActionSignIn, "") {
			return
		}
		if _, err := s.o.Auth.Sessions().Issue(w, r, pr); err != nil {
			s.o.Logger.Error("issuing a session", "err", err)
			writeError(w, http.StatusInternalServerError, errors.New("could not sign in"))
			return
		}
		s.o.Logger.Info("signed in", "principal", pr.Name, "provider", p.Name(), "remote", remote(r))
		http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
	}
}
