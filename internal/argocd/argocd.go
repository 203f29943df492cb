// Package argocd serves Argo CD's ApplicationSet plugin generator API
// (POST /api/v1/getparams.execute): one parameter set per environment that
// has something to deploy, so that an ApplicationSet makes one Application
// per environment while previewd provisions its database, namespace and
// Secret.
//
// The list is what Argo CD keeps: an environment missing from one answer
// has its Application, and everything the Application made, deleted. So
// the handler never drops a live environment while it works on it (it
// keeps the SHA last deployed), and it refuses to answer (503) until the
// first full reconcile after a start, when the store may not yet know
// every environment. Argo CD keeps its Applications when a generator
// answers an error.
package argocd

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// Path is where Argo CD calls a plugin generator.
const Path = "/api/v1/getparams.execute"

// Request is what Argo CD sends: the ApplicationSet's name and the
// generator's input parameters.
type Request struct {
	ApplicationSetName string `json:"applicationSetName"`
	Input              struct {
		Parameters map[string]any `json:"parameters"`
	} `json:"input"`
}

// Response is what Argo CD expects back.
type Response struct {
	Output struct {
		Parameters []Params `json:"parameters"`
	} `json:"output"`
}

// Params is one environment's parameter set, used in the ApplicationSet's
// template as {{.key}}, {{.namespace}}, … (goTemplate) or {{key}}. Every
// value is a string.
type Params struct {
	// Key is the environment's key: pr-7, branch-staging, production.
	Key string `json:"key"`
	// Kind is what the environment tracks: pull_request, branch or
	// production.
	Kind string `json:"kind"`
	// Number is the pull request's number; empty for branches.
	Number     string `json:"number"`
	Branch     string `json:"branch"`
	BranchSlug string `json:"branch_slug"`
	// SHA is the commit to deploy: the head SHA once it is ready, and the
	// SHA last deployed while a newer one is on its way or failed.
	SHA       string `json:"sha"`
	ShortSHA  string `json:"short_sha"`
	Namespace string `json:"namespace"`
	URL       string `json:"url"`
	Host      string `json:"host"`
	// Image is the app's image at SHA.
	Image string `json:"image"`
	// Database is the environment's schema or database name.
	Database string `json:"database"`
	// Secret is the name of the Secret holding the environment's
	// variables, in Namespace.
	Secret     string `json:"secret"`
	Production string `json:"production"`
}

// Store lists the live environments and keeps what each last deployed.
// *store.Store satisfies it.
type Store interface {
	LiveRecords(ctx context.Context) ([]store.Record, error)
}

// Options configure the handler.
type Options struct {
	// Token is the bearer token Argo CD must send. Surrounding white space
	// (a trailing newline from a file or Secret) is ignored, as Argo CD
	// trims its side.
	Token string
	Store Store
	// Describe fills the runtime's part of an environment's parameters
	// (namespace, host, image, secret) for the environment at e.SHA.
	Describe func(e env.Environment) (Params, error)
	// Synced reports whether the reconciler has finished a full pass over
	// the forge's list since previewd started. Until it does, the handler
	// answers 503, so that Argo CD keeps its Applications instead of
	// deleting those the store does not know yet. Nil means always synced.
	Synced func() bool
	Logger *slog.Logger
}

// Handler serves the plugin generator.
type Handler struct {
	o     Options
	token [sha256.Size]byte
}

// New returns the handler.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Token = strings.TrimSpace(o.Token)
	return &Handler{o: o, token: sha256.Sum256([]byte(o.Token))}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	if !h.authorized(r.Header.Get("Authorization")) {
		h.writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
		return
	}
	if h.o.Synced != nil && !h.o.Synced() {
		// Argo CD treats any answer but 2xx as a generator error and
		// leaves the ApplicationSet's Applications as they are.
		w.Header().Set("Retry-After", "5")
		h.writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "previewd has not finished its first reconcile since it started"})
		return
	}
	var req Request
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil && len(strings.TrimSpace(string(body))) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		h.writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request body: " + err.Error()})
		return
	}
	params, err := h.Params(r.Context(), req)
	if err != nil {
		h.o.Logger.Error("listing plugin generator parameters", "err", err)
		h.writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	var resp Response
	resp.Output.Parameters = params
	h.writeJSON(w, http.StatusOK, resp)
}

// authorized compares the request's bearer token with ours in constant
// time (over digests, so the length does not show either).
func (h *Handler) authorized(header string) bool {
	scheme, got, ok := strings.Cut(strings.TrimSpace(header), " ")
	if h.o.Token == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(sum[:], h.token[:]) == 1
}

// Params returns the parameter sets for a request, sorted by key: every
// live environment that is ready, at its SHA, and every other live
// environment that has been deployed before, at the SHA it last deployed
// (while a newer SHA is pending, building, waiting for checks or its image,
// or failed). An environment being deleted, or never deployed, is left
// out. Production is left out unless the input parameter
// includeProduction is true (the reference layout has its own production
// Application). An error fails the whole answer: a partial list would
// make Argo CD delete the environments left out.
func (h *Handler) Params(ctx context.Context, req Request) ([]Params, error) {
	live, err := h.o.Store.LiveRecords(ctx)
	if err != nil {
		return nil, err
	}
	withProd := truthy(req.Input.Parameters["includeProduction"])
	out := []Params{}
	for _, rec := range live {
		if rec.Production() && !withProd {
			continue
		}
		e, ok := deployable(rec)
		if !ok {
			continue
		}
		var err error
		p := Params{}
		if h.o.Describe != nil {
			if p, err = h.o.Describe(e); err != nil {
				return nil, fmt.Errorf("describing %s: %w", e.Key, err)
			}
		}
		p.Key, p.Kind, p.Branch, p.SHA, p.ShortSHA = e.Key, string(e.Kind), e.Branch, e.SHA, env.ShortSHA(e.SHA)
		p.BranchSlug = env.Slug(e.Branch, 63)
		p.Database, p.URL = e.Database, e.URL
		p.Production = strconv.FormatBool(e.Production())
		if e.Number > 0 {
			p.Number = strconv.Itoa(e.Number)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// deployable returns the environment as Argo CD should deploy it, and
// whether it should be listed at all.
func deployable(rec store.Record) (env.Environment, bool) {
	e := rec.Environment
	switch e.Status {
	case env.StatusReady:
		return e, e.SHA != ""
	case env.StatusDeleting:
		return e, false
	}
	d := rec.Deployed
	// A Deployed source older than the environment's current life (a pull
	// request closed and reopened) is not live: its namespace is gone.
	if d == nil || d.SHA == "" || rec.ReadyAt == nil || rec.ReadyAt.Before(rec.CreatedAt) {
		return e, false
	}
	e.SHA, e.Branch = d.SHA, d.Branch
	return e, true
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		b, _ := strconv.ParseBool(x)
		return b
	}
	return false
}

func (h *Handler) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		h.o.Logger.Warn("writing plugin generator answer", "err", err)
	}
}
