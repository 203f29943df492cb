package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
)

// dbTier chooses the environment's database tier, as /preview db <tier>
// does: {"tier": "clone"}, or "default" for the configured one.
func (s *Server) dbTier(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	var in struct {
		Tier string `json:"tier"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, fmt.Errorf(`the body is not {"tier": "clone"}: %w`, err))
		return
	}
	ch, rerr := s.askTier(w, r, key, in.Tier)
	switch {
	case rerr != nil:
		writeError(w, rerr.status, rerr)
	case ch != nil:
		writeJSON(w, http.StatusAccepted, env.Answer{Key: key, Action: ActionDBTier, Status: "accepted", DBTier: ch, Note: tierNote(*ch)})
	}
}

// dbTierPage is the dashboard's tier form.
func (s *Server) dbTierPage(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	ch, rerr := s.askTier(w, r, key, r.PostFormValue("tier"))
	switch {
	case rerr != nil:
		http.Error(w, rerr.Error(), rerr.status)
	case ch != nil:
		http.Redirect(w, r, "/environments/"+key, http.StatusSeeOther)
	}
}

// askTier checks and audits a tier asked for key, then asks the
// reconciler, as act does for the lifecycle's actions: the choice, or the
// refusal to answer; neither when the audit failed and answered already.
func (s *Server) askTier(w http.ResponseWriter, r *http.Request, key, tier string) (*env.TierChoice, *lifecycleError) {
	tier = strings.ToLower(strings.TrimSpace(tier))
	if tier == "" {
		return nil, refuse(http.StatusBadRequest, errors.New(`tier missing: send {"tier": "schema"}, "clone", "empty" or "default"`))
	}
	e, err := s.environment(r.Context(), key)
	switch {
	case err != nil:
		return nil, refuse(statusOf(err), err)
	case e.Production():
		return nil, refuse(http.StatusConflict, errors.New("production's database never changes tier"))
	case s.o.DBTier == nil:
		return nil, refuse(http.StatusServiceUnavailable, errNoReconciler)
	}
	if !s.recordDetail(w, r, auth.FromContext(r.Context()), ActionDBTier, key, tier) {
		return nil, nil
	}
	ch, err := s.o.DBTier(r.Context(), key, tier)
	var te *env.TierError
	switch {
	case errors.As(err, &te):
		return nil, refuse(http.StatusBadRequest, te)
	case err != nil:
		return nil, refuse(statusOf(err), err)
	}
	return &ch, nil
}

// tiers are the tiers the dashboard offers: none without DBTier.
func (s *Server) tiers() []string {
	if s.o.DBTier == nil {
		return nil
	}
	return s.o.DBTiers
}

// tierNote says what a tier choice does.
func tierNote(ch env.TierChoice) string {
	switch {
	case ch.Label != "" && ch.Label != ch.Tier:
		return "the label preview:db=" + ch.Label + " still chooses tier " + ch.Label + ": remove it for " + ch.Tier
	case ch.Tier == ch.Made:
		return "the database is already at tier " + ch.Tier
	}
	return "the database is re-created at tier " + ch.Tier + " (it was " + ch.Made + "), migrated and seeded"
}
