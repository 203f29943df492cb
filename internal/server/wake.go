package server

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Waking a preview on request. A request for a key the Router does not
// serve, whose environment sleeps or is queued, asks the reconciler to
// wake it (Options.Wake) and is held until the Router serves the key, then
// answered by the app. Requests that arrive while that wake is under way
// (the status has moved on to pending, building, starting, ...) are held
// too: a page's other requests must not fail while the page itself waits.
// A browser still waiting after wakePageAfter gets a page that reloads; any
// other client waits up to Options.WakeTimeout. A wake that fails is
// answered at once with its message.

const (
	// DefaultWakeTimeout is how long a request waits for a preview to
	// wake when Options.WakeTimeout is not set (lifecycle.wakeTimeout).
	DefaultWakeTimeout = 60 * time.Second
	// wakePoll is how often a held request asks the Router whether the
	// key serves: a map lookup, so often, to add little to the wait.
	wakePoll = 5 * time.Millisecond
	// wakeStatusPoll is how often it reads the stored status (to show
	// it, and to see a failure).
	wakeStatusPoll = 100 * time.Millisecond
	// wakePageAfter is how long a browser waits before it gets the
	// waking page instead.
	wakePageAfter = time.Second
	// wakeRetryAfter is the Retry-After of a 503 while waking (seconds),
	// and how often the waking page reloads.
	wakeRetryAfter = "2"
)

// wakeAction is what a request for a preview that does not serve does.
type wakeAction int

const (
	wakeNone  wakeAction = iota // nothing to wait for: answer as without waking
	wakeStart                   // ask for a wake, then hold the request
	wakeHold                    // a wake is under way: hold the request
	wakeFail                    // the wake failed: answer with its message
)

// decideWake says what a request does for environment e (found: it is in
// the store), given whether this server asked for its wake within the
// wake timeout (waking).
func decideWake(e env.Environment, found, waking bool) wakeAction {
	if !found || e.DeletedAt != nil {
		return wakeNone
	}
	switch e.Status {
	case env.StatusSleeping, env.StatusQueued:
		return wakeStart
	case env.StatusPending, env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusReady:
		if waking {
			return wakeHold
		}
	case env.StatusFailed:
		if waking {
			return wakeFail
		}
	}
	return wakeNone
}

// wakes remembers which keys this server asked to wake, and when. It
// holds only keys that were sleeping or queued, and forgets each once the
// wake timeout is over. The zero value is ready to use.
type wakes struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (w *wakes) mark(key string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.at == nil {
		w.at = map[string]time.Time{}
	}
	w.at[key] = now
}

// recent reports whether key was marked within d before now.
func (w *wakes) recent(key string, now time.Time, d time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.at[key]
	if ok && now.Sub(t) > d {
		delete(w.at, key)
		return false
	}
	return ok
}

func (s *Server) wakeTimeout() time.Duration {
	if s.o.WakeTimeout > 0 {
		return s.o.WakeTimeout
	}
	return DefaultWakeTimeout
}

// wake holds r for preview key while it wakes and answers it: through the
// app once the Router serves key, or with the waking page, a timeout or
// the wake's failure. It returns false, having written nothing, when
// there is nothing to wait for (unknown key, not asleep and not being
// woken), so the caller answers as it does without waking.
func (s *Server) wake(w http.ResponseWriter, r *http.Request, key string) bool {
	ctx := r.Context()
	timeout := s.wakeTimeout()
	e, err := s.o.Store.Get(ctx, key)
	action := decideWake(e, err == nil, s.wakes.recent(key, time.Now(), timeout))
	switch action {
	case wakeNone:
		return false
	case wakeFail:
		s.wakeFailed(w, r, e)
		return true
	case wakeStart:
		s.wakes.mark(key, time.Now())
		if s.o.Touch != nil {
			s.o.Touch(key)
		}
		s.o.Wake(key)
		s.o.Logger.Debug("waking on request", "env", key, "status", e.Status)
	case wakeHold:
		if s.o.Touch != nil {
			s.o.Touch(key)
		}
	}
	start := time.Now()
	poll := time.NewTicker(wakePoll)
	defer poll.Stop()
	status := time.NewTicker(wakeStatusPoll)
	defer status.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var page <-chan time.Time
	if browser(r) {
		t := time.NewTimer(wakePageAfter)
		defer t.Stop()
		page = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return true // the client has gone
		case <-poll.C:
			if h, ok := s.o.Router.Proxy(key); ok {
				s.o.Logger.Debug("woken request served", "env", key, "took", time.Since(start))
				if s.o.Touch != nil {
					// Served is activity: a wake longer than sleepAfter
					// must not leave it idle the moment it answers.
					s.o.Touch(key)
				}
				h.ServeHTTP(w, r)
				return true
			}
		case <-status.C:
			now, err := s.o.Store.Get(ctx, key)
			if err != nil {
				if ctx.Err() != nil {
					return true
				}
				s.o.Logger.Warn("reading a waking environment", "env", key, "err", err)
				continue
			}
			e = now
			switch decideWake(e, true, true) {
			case wakeFail:
				s.wakeFailed(w, r, e)
				return true
			case wakeNone:
				// Deleted, or being deleted: nothing will serve it.
				return false
			}
		case <-page:
			s.wakingPage(w, e, r, http.StatusServiceUnavailable)
			return true
		case <-deadline.C:
			w.Header().Set("Retry-After", wakeRetryAfter)
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "%s is not awake after %s (%s); try again\n", key, timeout, statusLine(e))
			return true
		}
	}
}

// statusLine is an environment's status and the first line of its
// message, e.g. "queued: 2nd of 3".
func statusLine(e env.Environment) string {
	msg, _, _ := strings.Cut(e.Message, "\n")
	msg = strings.TrimSpace(msg)
	switch {
	case msg == "":
		return string(e.Status)
	case strings.HasPrefix(msg, string(e.Status)):
		return msg
	}
	return string(e.Status) + ": " + msg
}

// wakeFailed answers a request whose preview failed to wake: 502 with the
// message (it holds the log's tail), as a page for a browser.
func (s *Server) wakeFailed(w http.ResponseWriter, r *http.Request, e env.Environment) {
	if browser(r) {
		s.wakingPage(w, e, r, http.StatusBadGateway)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	fmt.Fprintf(w, "%s could not wake: %s\n", e.Key, strings.TrimSpace(e.Message))
}

// wakingPage renders waking.html: the key, its status and message, and,
// unless the wake failed, a reload every wakeRetryAfter seconds.
func (s *Server) wakingPage(w http.ResponseWriter, e env.Environment, r *http.Request, code int) {
	failed := e.Status == env.StatusFailed
	if !failed {
		w.Header().Set("Retry-After", wakeRetryAfter)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	err := s.tmpl.ExecuteTemplate(w, "waking.html", map[string]any{
		"Key": e.Key, "Message": strings.TrimSpace(e.Message), "Line": statusLine(e),
		"Failed": failed, "Refresh": wakeRetryAfter, "Next": safeNext(r.URL.RequestURI()),
	})
	if err != nil {
		s.o.Logger.Error("rendering waking page", "err", err)
	}
}
