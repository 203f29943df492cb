package github

import (
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/previewd/previewd/internal/env"
)

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	// Secret is the webhook's secret. Without it every delivery is
	// refused.
	Secret string
	// Owner and Repo name the repository; deliveries for others are
	// ignored.
	Owner, Repo string
	// ProductionBranch: a push to it enqueues production.
	ProductionBranch string
	// Enqueue asks for a key to be reconciled.
	Enqueue func(key string)
	// Source, if set, is told which keys a delivery made stale, and maps
	// check and status events to the pull requests at that SHA.
	Source *Source
	// MaxBody bounds a delivery's size. Default 25 MiB (GitHub's cap).
	MaxBody int64
	// Commands, if set, carries out /preview commands from
	// issue_comment deliveries.
	Commands *Commands
	// Remember is how many delivery ids are kept to drop redeliveries.
	// Default 4096.
	Remember int
	Logger   *slog.Logger
}

// Webhook is the handler of POST /webhooks/github. It checks the
// signature over the raw body before reading anything from it, drops
// deliveries it has seen, and only enqueues keys: the reconciler reads the
// pull request from the API, so a forged or stale body cannot steer it.
type Webhook struct {
	o    WebhookOptions
	log  *slog.Logger
	seen *lru
}

// NewWebhook returns the handler.
func NewWebhook(o WebhookOptions) *Webhook {
	if o.MaxBody <= 0 {
		o.MaxBody = 25 << 20
	}
	if o.Remember <= 0 {
		o.Remember = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Webhook{o: o, log: o.Logger, seen: newLRU(o.Remember)}
}

// Sign returns the X-Hub-Signature-256 value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's X-Hub-Signature-256 under
// secret, comparing in constant time.
func Verify(secret string, body []byte, sig string) bool {
	if secret == "" {
		return false
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// The pull_request actions that can change what should run.
var prActions = map[string]bool{
	"opened": true, "reopened": true, "synchronize": true, "closed": true,
	"labeled": true, "unlabeled": true, "ready_for_review": true,
	"converted_to_draft": true, "edited": true,
}

// delivery is the part of any event previewd reads.
type delivery struct {
	Action     string `json:"action"`
	Number     int    `json:"number"`
	Ref        string `json:"ref"`
	SHA        string `json:"sha"`
	Repository *struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	PullRequest *struct {
		Number int `json:"number"`
	} `json:"pull_request"`
	CheckRun   *checkEvent `json:"check_run"`
	CheckSuite *checkEvent `json:"check_suite"`
}

type checkEvent struct {
	HeadSHA      string `json:"head_sha"`
	PullRequests []struct {
		Number int `json:"number"`
	} `json:"pull_requests"`
}

type answer struct {
	Status string   `json:"status"`
	Keys   []string `json:"keys,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reply(w, http.StatusRequestEntityTooLarge, answer{Status: "refused", Reason: "body too large"})
			return
		}
		reply(w, http.StatusBadRequest, answer{Status: "refused", Reason: "reading body"})
		return
	}
	if !Verify(h.o.Secret, body, r.Header.Get("X-Hub-Signature-256")) {
		h.log.Warn("webhook signature mismatch", "event", r.Header.Get("X-GitHub-Event"), "delivery", r.Header.Get("X-GitHub-Delivery"))
		reply(w, http.StatusUnauthorized, answer{Status: "refused", Reason: "bad or missing X-Hub-Signature-256"})
		return
	}
	id := r.Header.Get("X-GitHub-Delivery")
	if id != "" && !h.seen.add(id) {
		reply(w, http.StatusOK, answer{Status: "duplicate"})
		return
	}
	event := r.Header.Get("X-GitHub-Event")
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			reply(w, http.StatusBadRequest, answer{Status: "refused", Reason: "malformed form body"})
			return
		}
		body = []byte(form.Get("payload"))
	}
	var d delivery
	if err := json.Unmarshal(body, &d); err != nil {
		reply(w, http.StatusBadRequest, answer{Status: "refused", Reason: "malformed JSON"})
		return
	}
	if event == "ping" {
		reply(w, http.StatusOK, answer{Status: "pong"})
		return
	}
	if d.Repository == nil || !strings.EqualFold(d.Repository.FullName, h.o.Owner+"/"+h.o.Repo) {
		reply(w, http.StatusAccepted, answer{Status: "ignored", Reason: "another repository"})
		return
	}
	if event == "issue_comment" {
		h.comment(w, r, body)
		return
	}
	keys, why := h.keys(event, &d)
	if len(keys) == 0 {
		reply(w, http.StatusAccepted, answer{Status: "ignored", Reason: why})
		return
	}
	for _, k := range keys {
		if h.o.Source != nil {
			h.o.Source.Invalidate(k)
		}
		h.o.Enqueue(k)
	}
	h.log.Debug("webhook enqueued", "event", event, "action", d.Action, "delivery", id, "keys", strings.Join(keys, ","))
	reply(w, http.StatusAccepted, answer{Status: "queued", Keys: keys})
}

// comment hands an issue_comment delivery to the commands.
func (h *Webhook) comment(w http.ResponseWriter, r *http.Request, body []byte) {
	if h.o.Commands == nil {
		reply(w, http.StatusAccepted, answer{Status: "ignored", Reason: "commands are off"})
		return
	}
	status, err := h.o.Commands.Handle(r.Context(), body)
	if err != nil {
		h.log.Error("pr command failed", "err", err)
		reply(w, http.StatusBadGateway, answer{Status: "failed", Reason: "could not reach GitHub"})
		return
	}
	if why, ok := strings.CutPrefix(status, "ignored: "); ok {
		reply(w, http.StatusAccepted, answer{Status: "ignored", Reason: why})
		return
	}
	reply(w, http.StatusAccepted, answer{Status: status})
}

// keys returns the keys a delivery asks to look at again, or why none.
func (h *Webhook) keys(event string, d *delivery) ([]string, string) {
	switch event {
	case "pull_request":
		if !prActions[d.Action] {
			return nil, "action " + d.Action
		}
		n := d.Number
		if n == 0 && d.PullRequest != nil {
			n = d.PullRequest.Number
		}
		if n <= 0 {
			return nil, "no pull request number"
		}
		return []string{env.PullRequestKey(n)}, ""
	case "push":
		if d.Ref != "refs/heads/"+h.o.ProductionBranch {
			return nil, "push to " + d.Ref
		}
		return []string{env.ProductionKey}, ""
	case "check_run", "check_suite", "status":
		if h.o.Source == nil || !h.o.Source.WaitsForChecks() {
			return nil, "not waiting for checks"
		}
		sha, c := d.SHA, d.CheckRun
		if event == "check_suite" {
			c = d.CheckSuite
		}
		var keys []string
		if c != nil {
			sha = c.HeadSHA
			for _, p := range c.PullRequests {
				if p.Number > 0 {
					keys = append(keys, env.PullRequestKey(p.Number))
				}
			}
		}
		for _, k := range h.o.Source.KeysForSHA(sha) {
			if !contains(keys, k) {
				keys = append(keys, k)
			}
		}
		return keys, "no environment at " + sha
	}
	return nil, "event " + event
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func reply(w http.ResponseWriter, status int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(a)
}

// lru is a bounded set of recently seen strings.
type lru struct {
	mu    sync.Mutex
	max   int
	order *list.List
	items map[string]*list.Element
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: map[string]*list.Element{}}
}

// add records s and reports whether it was new.
func (l *lru) add(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[s]; ok {
		l.order.MoveToFront(e)
		return false
	}
	l.items[s] = l.order.PushFront(s)
	if l.order.Len() > l.max {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.items, old.Value.(string))
	}
	return true
}
