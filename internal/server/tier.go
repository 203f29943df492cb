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
	tier := strings.ToLower(strings.TrimSpace(in.Tier))
	if tier == "" {
		writeError(w, http.StatusBadRequest, errors.New(`tier missing: send {"tier": "schema"}, "clone", "empty" or "default"`))
		return
	}
	e, err := s.environment(r.Context(), key)
	switch {
	case err != nil:
		writeError(w, statusOf(err), err)
		return
	case e.Production():
		writeError(w, http.StatusConflict, errors.New("production's database never changes tier"))
		return
	case s.o.DBTier == nil:
		writeError(w, http.StatusServiceUnavailable, errNoReconciler)
		return
	}
	if !s.recordDetail(w, r, auth.FromContext(r.Context()), ActionDBTier, key, tier) {
		return
	}
	ch, err := s.o.DBTier(r.Context(), key, tier)
	var te *env.TierError
	switch {
	case errors.As(err, &te):
		writeError(w, http.StatusBadRequest, te)
		return
	case err != nil:
		writeError(w, statusOf(err), err)
		return
	}
	a := env.Answer{Key: key, Action: ActionDBTier, Status: "accepted", DBTier: &ch, Note: tierNote(ch)}
	writeJSON(w, http.StatusAccepted, a)
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
