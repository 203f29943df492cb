package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

const token = "viewer-0123456789abcdef"

// fast shortens c's backoff and idle timeout for a test.
func fast(c *Client) *Client {
	c.minBackoff, c.maxBackoff = 10*time.Millisecond, 40*time.Millisecond
	return c
}

func change(id uint64, key string, status env.Status) string {
	b, _ := json.Marshal(env.Change{ID: id, Key: key, Status: status, Message: string(status) + " of " + key})
	return string(b)
}

var errDone = errors.New("done")

// TestEventsResume: the reader skips heartbeats, delivers each change
// once, survives a connection cut mid-event (the half-written event is
// not delivered), reconnects with Last-Event-ID, passes a reset on, and
// sends the token in the Authorization header only.
func TestEventsResume(t *testing.T) {
	var mu sync.Mutex
	var conns []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns = append(conns, r)
		n := len(conns)
		mu.Unlock()
		if r.URL.Path != "/api/v1/events" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		switch n {
		case 1:
			fmt.Fprintf(w, ": heartbeat\n\nid: 1\nevent: environment\ndata: %s\n\n", change(1, "pr-1", env.StatusBuilding))
			fmt.Fprintf(w, "id: 2\nevent: environment\ndata: %s\n\n", change(2, "pr-1", env.StatusMigrating))
			fmt.Fprintf(w, "id: 3\nevent: environment\ndata: {\"id\":3,\"key\":")
			f.Flush()
			panic(http.ErrAbortHandler) // the connection drops mid-event
		case 2:
			fmt.Fprintf(w, "event: reset\r\ndata: {}\r\n\r\n: heartbeat\r\n\r\n")
			fmt.Fprintf(w, "id: 4\r\nevent: environment\r\ndata: %s\r\n\r\n", change(4, "pr-1", env.StatusReady))
			f.Flush()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c := fast(New(srv.URL+"/", token))
	var got []string
	err := c.Events(context.Background(), 0, func(ev Event) error {
		switch ev.Type {
		case Connected:
			got = append(got, "connected")
		case Reset:
			got = append(got, "reset")
		case Changed:
			got = append(got, fmt.Sprintf("%d %s %s", ev.Change.ID, ev.Change.Key, ev.Change.Status))
			if ev.Change.Status == env.StatusReady {
				return errDone
			}
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("Events returned %v, want the callback's error", err)
	}
	want := "connected|1 pr-1 building|2 pr-1 migrating|connected|reset|4 pr-1 ready"
	if s := strings.Join(got, "|"); s != want {
		t.Errorf("events:\n got %s\nwant %s", s, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 2 {
		t.Fatalf("%d connections, want 2", len(conns))
	}
	if h := conns[0].Header.Get("Last-Event-ID"); h != "" {
		t.Errorf("first connection sent Last-Event-ID %q", h)
	}
	if h := conns[1].Header.Get("Last-Event-ID"); h != "2" {
		t.Errorf("reconnection sent Last-Event-ID %q, want 2", h)
	}
	for _, r := range conns {
		if r.Header.Get("Authorization") != "Bearer "+token || strings.Contains(r.URL.String(), token) {
			t.Errorf("token: header %q, URL %q", r.Header.Get("Authorization"), r.URL)
		}
		if r.Header.Get("Accept") != "text/event-stream" {
			t.Errorf("Accept %q", r.Header.Get("Accept"))
		}
	}
}

// TestEventsRefused: a 401 ends Events with the server's message, a
// missing endpoint is ErrNoStream, and a 5xx or a silent stream is
// retried; a cancelled context ends it with nil.
func TestEventsRefused(t *testing.T) {
	t.Run("unauthorized", func(t *testing.T) {
		n := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n++
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error": "unknown token"}`)
		}))
		defer srv.Close()
		err := fast(New(srv.URL, "x")).Events(context.Background(), 0, func(Event) error { return nil })
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != 401 || ae.Message != "unknown token" || n != 1 {
			t.Errorf("Events: %v (%d requests), want one 401 with the message", err, n)
		}
		if !strings.Contains(err.Error(), "401 Unauthorized: unknown token") {
			t.Errorf("message %q", err)
		}
	})
	t.Run("no stream", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		defer srv.Close()
		if err := fast(New(srv.URL, "")).Events(context.Background(), 0, func(Event) error { return nil }); !errors.Is(err, ErrNoStream) {
			t.Errorf("Events: %v, want ErrNoStream", err)
		}
	})
	t.Run("5xx and silence retried", func(t *testing.T) {
		var mu sync.Mutex
		n := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			i := n
			mu.Unlock()
			switch i {
			case 1:
				http.Error(w, "starting", http.StatusServiceUnavailable)
			case 2: // connected, then silent: no heartbeat
				w.Header().Set("Content-Type", "text/event-stream")
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			default:
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprintf(w, "id: 7\nevent: environment\ndata: %s\n\n", change(7, "pr-2", env.StatusReady))
			}
		}))
		defer srv.Close()
		c := fast(New(srv.URL, ""))
		c.idle = 100 * time.Millisecond
		var ids []uint64
		err := c.Events(context.Background(), 5, func(ev Event) error {
			if ev.Type == Changed {
				ids = append(ids, ev.Change.ID)
				return errDone
			}
			return nil
		})
		if !errors.Is(err, errDone) || len(ids) != 1 || ids[0] != 7 {
			t.Errorf("Events: %v %v", err, ids)
		}
		mu.Lock()
		defer mu.Unlock()
		if n != 3 {
			t.Errorf("%d connections, want 3", n)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		defer srv.Close()
		ctx, cancel := context.WithCancel(context.Background())
		err := New(srv.URL, "").Events(ctx, 0, func(ev Event) error {
			cancel()
			return nil
		})
		if err != nil {
			t.Errorf("Events after cancel: %v", err)
		}
	})
}

func TestDefaults(t *testing.T) {
	c := New("http://x/", "")
	if c.minBackoff != 500*time.Millisecond || c.maxBackoff != 5*time.Second || c.Server() != "http://x" {
		t.Errorf("backoff %s..%s, server %q", c.minBackoff, c.maxBackoff, c.Server())
	}
}

func TestReadSSE(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want []sse
	}{
		"one":             {"id: 1\nevent: environment\ndata: {}\n\n", []sse{{"1", "environment", "{}"}}},
		"no space":        {"id:2\nevent:log\ndata:x\n\n", []sse{{"2", "log", "x"}}},
		"crlf":            {"event: reset\r\ndata: {}\r\n\r\n", []sse{{"", "reset", "{}"}}},
		"default type":    {"data: a\n\n", []sse{{"", "message", "a"}}},
		"two data lines":  {"data: a\ndata: b\n\n", []sse{{"", "message", "a\nb"}}},
		"comments":        {": heartbeat\n\n: x\ndata: a\n\n", []sse{{"", "message", "a"}}},
		"no data":         {"id: 3\nevent: environment\n\n", nil},
		"unfinished":      {"data: a\n\ndata: b\n", []sse{{"", "message", "a"}}},
		"unknown field":   {"retry: 10\nfoo\ndata: a\n\n", []sse{{"", "message", "a"}}},
		"colon in value":  {"data: {\"a\": \"b:c\"}\n\n", []sse{{"", "message", `{"a": "b:c"}`}}},
		"two events":      {"id: 1\ndata: a\n\nid: 2\ndata: b\n\n", []sse{{"1", "message", "a"}, {"2", "message", "b"}}},
		"empty data line": {"data\n\n", []sse{{"", "message", ""}}},
	} {
		t.Run(name, func(t *testing.T) {
			var got []sse
			if err := readSSE(strings.NewReader(tc.in), func() {}, func(e sse) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRequests: each method's request and answer, the errors it gives
// (server message and status, unknown key, unreachable server).
func TestRequests(t *testing.T) {
	type seen struct{ method, path, query, body, auth string }
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Header.Get("Authorization")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/environments":
			io.WriteString(w, `{"environments": [{"key": "pr-1", "status": "ready"}], "source": {"ok": true}}`)
		case r.URL.Path == "/api/v1/environments/pr-1":
			io.WriteString(w, `{"key": "pr-1", "status": "ready", "down": true, "events": [{"reason": "Ready"}]}`)
		case r.URL.Path == "/api/v1/environments/pr-1/logs":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "line 1\nline 2\n")
		case r.URL.Path == "/api/v1/environments/pr-2/logs":
			w.WriteHeader(404)
			io.WriteString(w, `{"error": "pr-2 has written no output yet: no logs"}`)
		case strings.HasPrefix(r.URL.Path, "/api/v1/environments/pr-1/"):
			w.WriteHeader(202)
			io.WriteString(w, `{"key": "pr-1", "action": "extend", "status": "accepted", "expiresAt": "2026-12-04T12:00:00Z"}`)
		case r.URL.Path == "/api/v1/environments/production/down":
			w.WriteHeader(409)
			io.WriteString(w, `{"error": "production cannot be put down"}`)
		default:
			w.WriteHeader(404)
			io.WriteString(w, `{"error": "environment not found: pr-9"}`)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := New(srv.URL, token)
	l, err := c.List(ctx)
	if err != nil || len(l.Environments) != 1 || l.Environments[0].Key != "pr-1" || l.Source == nil || !l.Source.OK {
		t.Errorf("List: %+v %v", l, err)
	}
	e, err := c.Get(ctx, "pr-1")
	if err != nil || !e.Down || e.Status != env.StatusReady || len(e.Events) != 1 {
		t.Errorf("Get: %+v %v", e, err)
	}
	if s, err := c.Logs(ctx, "pr-1", 20); err != nil || s != "line 1\nline 2\n" {
		t.Errorf("Logs: %q %v", s, err)
	}
	a, err := c.Extend(ctx, "pr-1", "3d")
	if err != nil || a.ExpiresAt == nil || a.ExpiresAt.Day() != 4 {
		t.Errorf("Extend: %+v %v", a, err)
	}
	for name, f := range map[string]func(context.Context, string) (Answer, error){
		"redeploy": c.Redeploy, "sleep": c.Sleep, "wake": c.Wake, "down": c.Down, "up": c.Up,
	} {
		if _, err := f(ctx, "pr-1"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Unknown key: a *NotFoundError saying so; another 404: an *Error.
	var nf *NotFoundError
	if _, err := c.Get(ctx, "pr-9"); !errors.As(err, &nf) || err.Error() != "no environment pr-9" {
		t.Errorf("Get of an unknown key: %v", err)
	}
	if _, err := c.Wake(ctx, "pr-9"); !errors.As(err, &nf) {
		t.Errorf("Wake of an unknown key: %v", err)
	}
	var ae *Error
	if _, err := c.Logs(ctx, "pr-2", 0); errors.As(err, &nf) || !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(err.Error(), "no output yet") {
		t.Errorf("Logs without logs: %v", err)
	}
	if _, err := c.Down(ctx, "production"); !errors.As(err, &ae) || ae.Status != 409 || !strings.HasSuffix(err.Error(), "409 Conflict: production cannot be put down") {
		t.Errorf("Down of production: %v", err)
	}
	mu.Lock()
	want := map[string]seen{
		"logs":   {"GET", "/api/v1/environments/pr-1/logs", "lines=20", "", "Bearer " + token},
		"extend": {"POST", "/api/v1/environments/pr-1/extend", "", `{"duration":"3d"}`, "Bearer " + token},
	}
	for name, w := range want {
		found := false
		for _, s := range got {
			found = found || s == w
		}
		if !found {
			t.Errorf("no %s request %+v among %+v", name, w, got)
		}
	}
	mu.Unlock()
	// Nothing listening.
	srv.Close()
	if _, err := c.List(ctx); err == nil || !strings.HasPrefix(err.Error(), "asking previewd at "+srv.URL) {
		t.Errorf("List with nothing listening: %v", err)
	}
}

// TestFollowLogs: log lines as events, then the end; a previewd that
// does not follow answers text, which is given line by line before
// ErrNoStream.
func TestFollowLogs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "true" || r.URL.Query().Get("lines") != "5" {
			http.Error(w, "bad query "+r.URL.RawQuery, 400)
			return
		}
		if r.URL.Path == "/api/v1/environments/old/logs" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "a\nb\n")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": heartbeat\n\nevent: log\ndata: {\"step\":\"build\",\"text\":\"go build\"}\n\n")
		io.WriteString(w, "event: log\ndata: {\"step\":\"run\",\"text\":\"listening \\ufffd\"}\n\n")
	}))
	defer srv.Close()
	c := New(srv.URL, "")
	var got []string
	err := c.FollowLogs(context.Background(), "pr-1", 5, func(l env.LogLine) error {
		got = append(got, l.Step+":"+l.Text)
		return nil
	})
	if err != nil || strings.Join(got, "|") != "build:go build|run:listening \ufffd" {
		t.Errorf("FollowLogs: %v %q", err, got)
	}
	got = nil
	err = c.FollowLogs(context.Background(), "old", 5, func(l env.LogLine) error {
		got = append(got, l.Text)
		return nil
	})
	if !errors.Is(err, ErrNoStream) || strings.Join(got, "|") != "a|b" {
		t.Errorf("FollowLogs of an older previewd: %v %q", err, got)
	}
}
