package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

const watchSHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"

// fakeStream is a previewd whose event stream (the wire format of
// env.Change's doc comment) carries steps for pr-5 once its redeploy
// or wake is asked, with another key's change among them.
type fakeStream struct {
	status  env.Status // pr-5's status before the action
	steps   []env.Change
	logs    string
	mu      sync.Mutex
	asked   chan struct{}
	once    sync.Once
	streams atomic.Int32
	// streamFirst is whether the stream was connected when the action
	// was asked.
	streamFirst atomic.Bool
	// dropAfter, if set, cuts the first connection after that many
	// steps; the next one resumes after the last id it saw.
	dropAfter int
	resumed   atomic.Value // the Last-Event-ID of the second connection
}

func (f *fakeStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/v1/environments/pr-5":
		f.mu.Lock()
		defer f.mu.Unlock()
		json.NewEncoder(w).Encode(env.Environment{Key: "pr-5", Status: f.status, SHA: watchSHA, UpdatedAt: time.Unix(1, 0)})
	case r.Method == "POST" && (r.URL.Path == "/api/v1/environments/pr-5/redeploy" || r.URL.Path == "/api/v1/environments/pr-5/wake"):
		f.streamFirst.Store(f.streams.Load() > 0)
		f.once.Do(func() { close(f.asked) })
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status": "accepted"}`)
	case r.URL.Path == "/api/v1/environments/pr-5/logs":
		io.WriteString(w, f.logs)
	case r.URL.Path == "/api/v1/events":
		n := f.streams.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": heartbeat\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-f.asked:
		case <-r.Context().Done():
			return
		}
		from := 0
		if n > 1 {
			f.resumed.Store(r.Header.Get("Last-Event-ID"))
			fmt.Sscan(r.Header.Get("Last-Event-ID"), &from)
		}
		for i, c := range f.steps[from:] {
			i += from
			if n == 1 && f.dropAfter > 0 && i == f.dropAfter {
				panic(http.ErrAbortHandler)
			}
			c.ID = uint64(i + 1)
			b, _ := json.Marshal(c)
			fmt.Fprintf(w, "id: %d\nevent: environment\ndata: %s\n\n", c.ID, b)
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error": "environment not found"}`)
	}
}

// steps are the changes after the action: first the action's own
// audit line (the state before, again), then the steps to last.
func steps(before env.Status, last env.Change) []env.Change {
	start := time.Now().Add(-time.Second)
	return []env.Change{
		{Key: "pr-5", SHA: watchSHA, Status: before, Reason: "Action"},
		{Key: "pr-9", SHA: watchSHA, Status: env.StatusBuilding, Message: "another one"},
		{Key: "pr-5", SHA: watchSHA, Status: env.StatusBuilding, Message: "redeploying a1b2c3d on request", StepStartedAt: start},
		{Key: "pr-5", SHA: watchSHA, Status: env.StatusMigrating, StepStartedAt: start},
		{Key: "pr-5", SHA: watchSHA, Status: env.StatusStarting, Message: "starting a1b2c3d", StepStartedAt: start},
		last,
	}
}

// TestWaitLive: redeploy and wake show the key's steps from the event
// stream, connected before the action is asked, until ready (exit 0) or
// failed (exit 1, with the message's log tail or else the log's).
func TestWaitLive(t *testing.T) {
	ready := env.Change{Key: "pr-5", SHA: watchSHA, Branch: "feature", Status: env.StatusReady, URL: "http://pr-5.test", TookMS: 1200}
	for name, tc := range map[string]struct {
		args      []string
		before    env.Status
		last      env.Change
		logs      string
		code      int
		out, err  string
		noStream  bool
		dropAfter int
	}{
		"a dropped stream resumes": {args: []string{"redeploy", "pr-5"}, before: env.StatusFailed, last: ready, code: 0, dropAfter: 3,
			out: "redeploy of pr-5 accepted\n" +
				"  building  pr-5           redeploying a1b2c3d on request\n" +
				"  migrating pr-5           a1b2c3d\n" +
				"  starting  pr-5           starting a1b2c3d\n" +
				"  ready     pr-5           http://pr-5.test  (feature @ a1b2c3d, took 1.2 s)\n"},
		"redeploy ready": {args: []string{"redeploy", "pr-5"}, before: env.StatusFailed, last: ready, code: 0,
			out: "redeploy of pr-5 accepted\n" +
				"  building  pr-5           redeploying a1b2c3d on request\n" +
				"  migrating pr-5           a1b2c3d\n" +
				"  starting  pr-5           starting a1b2c3d\n" +
				"  ready     pr-5           http://pr-5.test  (feature @ a1b2c3d, took 1.2 s)\n"},
		"wake ready": {args: []string{"wake", "pr-5"}, before: env.StatusSleeping, last: ready, code: 0,
			out: "wake of pr-5 accepted\n"},
		"failed with its tail": {args: []string{"redeploy", "pr-5"}, before: env.StatusFailed, code: 1,
			last: env.Change{Key: "pr-5", SHA: watchSHA, Status: env.StatusFailed, Message: "migrate: exit status 1\nno such table: notes"},
			out:  "  FAILED    pr-5           migrate: exit status 1\n    no such table: notes\n",
			err:  "previewd: pr-5 failed: migrate: exit status 1\n"},
		"failed, the log's tail": {args: []string{"redeploy", "pr-5"}, before: env.StatusFailed, code: 1, logs: "line 1\nline 2\n",
			last: env.Change{Key: "pr-5", SHA: watchSHA, Status: env.StatusFailed, Message: "start: exit status 2"},
			out:  "  FAILED    pr-5           start: exit status 2\n    line 1\n    line 2\n",
			err:  "previewd: pr-5 failed: start: exit status 2\n"},
		"no wait": {args: []string{"redeploy", "pr-5", "--no-wait"}, before: env.StatusFailed, last: ready, code: 0,
			out: "redeploy of pr-5 accepted\n", noStream: true},
		"wake of a ready one": {args: []string{"wake", "pr-5"}, before: env.StatusReady, last: ready, code: 0,
			out: "wake of pr-5 accepted\n  ready     pr-5           a1b2c3d\n", noStream: true},
		"wake of a failed one": {args: []string{"wake", "pr-5"}, before: env.StatusFailed, last: ready, code: 1,
			out: "wake of pr-5 accepted\n  FAILED    pr-5           a1b2c3d\n", noStream: true,
			err: "previewd: pr-5 failed; a wake does not deploy it again: previewd redeploy pr-5\n"},
		"json": {args: []string{"redeploy", "pr-5", "-o", "json"}, before: env.StatusFailed, last: ready, code: 0,
			out: "{\n  \"key\": \"pr-5\",\n  \"action\": \"redeploy\",\n  \"status\": \"accepted\"\n}\n"},
	} {
		t.Run(name, func(t *testing.T) {
			f := &fakeStream{status: tc.before, steps: steps(tc.before, tc.last), logs: tc.logs, asked: make(chan struct{}), dropAfter: tc.dropAfter}
			srv := httptest.NewServer(f)
			defer srv.Close()
			code, out, errs := run(t, append(tc.args, "--server", srv.URL)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, errs)
			}
			if !strings.HasPrefix(out, tc.out) && !strings.HasSuffix(out, tc.out) {
				t.Errorf("stdout:\n%s\nwant (as start or end):\n%s", out, tc.out)
			}
			if tc.err != "" && errs != tc.err {
				t.Errorf("stderr %q, want %q", errs, tc.err)
			}
			if strings.Contains(out, "pr-9") || strings.Contains(out, "\r") || strings.Contains(out, "\033") {
				t.Errorf("another key's change or a terminal's escapes in %q", out)
			}
			if tc.dropAfter > 0 {
				if n, id := f.streams.Load(), f.resumed.Load(); n != 2 || id != fmt.Sprint(tc.dropAfter) {
					t.Errorf("%d connections, resumed after %v; want 2, after %d", n, id, tc.dropAfter)
				}
			}
			if tc.noStream {
				if n := f.streams.Load(); n != 0 {
					t.Errorf("%d event streams opened, want none", n)
				}
			} else if !f.streamFirst.Load() {
				t.Error("the action was asked before the event stream was connected")
			}
		})
	}
}

// TestLogsFollow: logs -f prints each streamed line with its step.
func TestLogsFollow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "true" || r.URL.Query().Get("lines") != "3" {
			http.Error(w, "bad query", 400)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: log\ndata: {\"step\":\"build\",\"text\":\"go build -o server .\"}\n\n: heartbeat\n\n")
		io.WriteString(w, "event: log\ndata: {\"step\":\"run\",\"text\":\"listening on 127.0.0.1:4312\"}\n\n")
	}))
	defer srv.Close()
	code, out, errs := run(t, "logs", "pr-5", "-f", "-n", "3", "--server", srv.URL)
	if code != 0 || out != "[build] go build -o server .\n[run] listening on 127.0.0.1:4312\n" {
		t.Errorf("logs -f: exit %d, %q %q", code, out, errs)
	}
}
