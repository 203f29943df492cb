// Package argocd serves Argo CD's ApplicationSet plugin generator API
// (POST /api/v1/getparams.execute): one parameter set per environment that
// is ready to deploy, so that an ApplicationSet makes one Application per
// environment while previewd provisions its database, namespace and
// Secret.
package argocd

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/previewd/previewd/internal/env"
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
// template as {{.key}}, {{.namespace}}, … (goTemplate) or {{key}}.
type Params struct {
	Key        string `json:"key"`
	Kind       string `json:"kind"`
	Number     string `json:"number"`
	Branch     string `json:"branch"`
	BranchSlug string `json:"branch_slug"`
	SHA        string `json:"sha"`
	ShortSHA   string `json:"short_sha"`
	Namespace  string `json:"namespace"`
	URL        string `json:"url"`
	Host       string `json:"host"`
	Image      string `json:"image"`
	// Database is the environment's schema or database name.
	Database string `json:"database"`
	// Secret is the name of the Secret holding the environment's
	// variables, in Namespace.
	Secret     string `json:"secret"`
	Production string `json:"production"`
}

// Store lists the live environments.
type Store interface {
	Live(ctx context.Context) ([]env.Environment, error)
}

// Options configure the handler.
type Options struct {
	// Token is the bearer token Argo CD must send.
	Token string
	Store Store
	// Describe fills the runtime's part of an environment's parameters
	// (namespace, host, image, secret).
	Describe func(e env.Environment) (Params, error)
	Logger   *slog.Logger
}

// Handler serves the plugin generator.
type Handler struct{ o Options }

// New returns the handler.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{o: o}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if h.o.Token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.o.Token)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
		return
	}
	var req Request
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request body: " + err.Error()})
		return
	}
	params, err := h.Params(r.Context(), req)
	if err != nil {
		h.o.Logger.Error("listing plugin generator parameters", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	var resp Response
	resp.Output.Parameters = params
	writeJSON(w, http.StatusOK, resp)
}

// Params returns the parameter sets for a request: every live environment
// whose status is ready, sorted by key. Production is left out unless the
// input parameter includeProduction is true (the reference layout has its
// own production Application).
func (h *Handler) Params(ctx context.Context, req Request) ([]Params, error) {
	live, err := h.o.Store.Live(ctx)
	if err != nil {
		return nil, err
	}
	withProd := truthy(req.Input.Parameters["includeProduction"])
	out := []Params{}
	for _, e := range live {
		if e.Status != env.StatusReady || (e.Production() && !withProd) {
			continue
		}
		p := Params{}
		if h.o.Describe != nil {
			if p, err = h.o.Describe(e); err != nil {
				return nil, err
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
