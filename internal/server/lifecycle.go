package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// The lifecycle's audited actions (config lifecycle).
const (
	ActionSleep  = "sleep"
	ActionWake   = "wake"
	ActionExtend = "extend"
	ActionKeep   = "keep"
	ActionUnkeep = "unkeep"
)

// maxExtend bounds one extension: a forgotten preview should still
// expire within a month.
const maxExtend = 30 * 24 * time.Hour

// errProductionLifecycle refuses a lifecycle action on production (the
// reconciler's own words for it).
var errProductionLifecycle = errors.New("production never sleeps or expires")

// lifecycleError is a refused action (a lifecycle one, a tier): the status
// to answer and why.
type lifecycleError struct {
	status int
	err    error
}

func (e *lifecycleError) Error() string { return e.err.Error() }

func refuse(status int, err error) *lifecycleError { return &lifecycleError{status, err} }

// act checks, audits and does action on r's environment; duration
// gives extend's. A nil answer with a nil error means the answer
// was written already (the audit could not be recorded).
func (s *Server) act(w http.ResponseWriter, r *http.Request, action string, duration func() (string, error)) (*env.Answer, *lifecycleError) {
	key := r.PathValue("key")
	e, err := s.environment(r.Context(), key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, refuse(http.StatusNotFound, fmt.Errorf("%w: %s", store.ErrNotFound, key))
	case err != nil:
		return nil, refuse(statusOf(err), err)
	case e.Key == env.ProductionKey || e.Production():
		return nil, refuse(http.StatusConflict, errProductionLifecycle)
	}
	var d time.Duration
	detail := ""
	if action == ActionExtend {
		v, err := duration()
		if err != nil {
			return nil, refuse(http.StatusBadRequest, err)
		}
		if d, err = extension(v); err != nil {
			return nil, refuse(http.StatusBadRequest, err)
		}
		detail = v
	}
	if !s.lifecycleWired(action) {
		return nil, refuse(http.StatusServiceUnavailable, errNoReconciler)
	}
	p := auth.FromContext(r.Context())
	if !s.recordDetail(w, r, p, action, key, detail) {
		return nil, nil
	}
	a := &env.Answer{Key: key, Action: action, Status: "accepted"}
	ctx := r.Context()
	switch action {
	case ActionSleep:
		err = s.o.Sleep(ctx, key, p.Name)
		switch e.Status {
		case env.StatusSleeping:
			a.Note = "it was sleeping already"
		case env.StatusReady:
		default:
			// Only a running preview is put to sleep; a later ready
			// one sleeps after sleepAfter as usual.
			a.Note = "it is " + string(e.Status) + ", not running: nothing to put to sleep"
		}
	case ActionWake:
		s.o.Wake(key)
		if e.Status != env.StatusSleeping && e.Status != env.StatusQueued {
			a.Note = "it was not sleeping; counted as activity"
		}
	case ActionExtend:
		var until time.Time
		if until, err = s.o.Extend(ctx, key, d); err == nil && !until.IsZero() {
			a.ExpiresAt = &until
		} else if err == nil {
			a.Note = "it never expires"
		}
	case ActionKeep, ActionUnkeep:
		on := action == ActionKeep
		if err = s.o.Keep(ctx, key, on); err == nil {
			a.Kept = &on
		}
	}
	if err != nil {
		s.o.Logger.Error("lifecycle action", "action", action, "env", key, "err", err)
		if errors.Is(err, store.ErrNotFound) {
			return nil, refuse(http.StatusNotFound, fmt.Errorf("%w: %s", store.ErrNotFound, key))
		}
		return nil, refuse(http.StatusInternalServerError, err)
	}
	return a, nil
}

// lifecycleWired reports whether the reconciler's entry point for action
// is there.
func (s *Server) lifecycleWired(action string) bool {
	switch action {
	case ActionSleep:
		return s.o.Sleep != nil
	case ActionWake:
		return s.o.Wake != nil
	case ActionExtend:
		return s.o.Extend != nil
	}
	return s.o.Keep != nil
}

// extension parses extend's duration: positive, at most maxExtend.
func extension(v string) (time.Duration, error) {
	d, err := env.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("duration: %w", err)
	case d <= 0:
		return 0, fmt.Errorf("duration: %q: extend by more than nothing", v)
	case d > maxExtend:
		return 0, fmt.Errorf("duration: %q is more than 30d, the most one extension gives (use keep to pin a preview)", v)
	}
	return d, nil
}

// maxBodyBytes bounds an action's JSON body.
const maxBodyBytes = 1 << 10

// apiDuration is extend's duration from ?duration= or the JSON body
// {"duration": "3d"}.
func apiDuration(w http.ResponseWriter, r *http.Request) func() (string, error) {
	return func() (string, error) {
		if v := r.URL.Query().Get("duration"); v != "" {
			return v, nil
		}
		var in struct {
			Duration string `json:"duration"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		dec.DisallowUnknownFields()
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch err := dec.Decode(&in); {
		case err == nil, errors.Is(err, io.EOF):
		case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
			return "", errors.New(`the body is not JSON; want {"duration": "3d"}`)
		case errors.As(err, &typ):
			return "", errors.New(`the body is not {"duration": "3d"}`)
		default:
			return "", fmt.Errorf(`body: %w; want {"duration": "3d"}`, err)
		}
		if strings.TrimSpace(in.Duration) == "" {
			return "", errors.New(`duration missing: send {"duration": "3d"} or ?duration=3d`)
		}
		return in.Duration, nil
	}
}

// pageDuration is extend's duration from the dashboard's form.
func pageDuration(r *http.Request) func() (string, error) {
	return func() (string, error) {
		v := r.PostFormValue("duration")
		if strings.TrimSpace(v) == "" {
			return "", errors.New("duration missing")
		}
		return v, nil
	}
}

// lifecycleAPI answers POST /api/v1/environments/{key}/<action>.
func (s *Server) lifecycleAPI(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := s.act(w, r, action, apiDuration(w, r))
		switch {
		case err != nil:
			writeError(w, err.status, err)
		case a != nil:
			writeJSON(w, http.StatusAccepted, a)
		}
	}
}

// lifecyclePage is the dashboard's button for action: back to where it
// was pressed (the dashboard or the environment's page).
func (s *Server) lifecyclePage(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		a, err := s.act(w, r, action, pageDuration(r))
		switch {
		case err != nil:
			http.Error(w, err.Error(), err.status)
		case a != nil:
			next := "/environments/" + a.Key
			if r.PostFormValue("next") == "/" {
				next = "/"
			}
			http.Redirect(w, r, next, http.StatusSeeOther)
		}
	}
}

// pricedStore prices every environment's usage it reads (Options.Rates),
// so the API and the dashboard show the cost line alike.
type pricedStore struct {
	Store
	rates env.Rates
}

func (p pricedStore) Live(ctx context.Context) ([]env.Environment, error) {
	live, err := p.Store.Live(ctx)
	for i := range live {
		live[i] = p.price(live[i])
	}
	return live, err
}

func (p pricedStore) Get(ctx context.Context, key string) (env.Environment, error) {
	e, err := p.Store.Get(ctx, key)
	return p.price(e), err
}

func (p pricedStore) price(e env.Environment) env.Environment {
	if e.Usage != nil {
		u := e.Usage.Priced(p.rates)
		e.Usage = &u
	}
	return e
}
