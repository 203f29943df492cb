package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// follower is a runtime.Follower of its own: for a key it holds, it sends
// the last n of its past lines, then what comes on more until more is
// closed (it then returns nil: the environment went) or ctx is done.
type follower struct {
	past map[string][]env.LogLine
	more chan env.LogLine
	// flood, if set, is sent for ever, as fast as it is taken.
	flood *env.LogLine

	mu      sync.Mutex
	asked   []int // the n of each Follow
	sent    int
	stopped chan struct{} // closed when a Follow returns because ctx is done
}

func (f *follower) Follow(ctx context.Context, key string, n int, lines chan<- env.LogLine) error {
	f.mu.Lock()
	f.asked = append(f.asked, n)
	f.mu.Unlock()
	past, ok := f.past[key]
	if !ok {
		return fmt.Errorf("%w: %s has not run here", runtime.ErrNoLogs, key)
	}
	send := func(l env.LogLine) bool {
		select {
		case lines <- l:
			f.mu.Lock()
			f.sent++
			f.mu.Unlock()
			return true
		case <-ctx.Done():
			if f.stopped != nil {
				close(f.stopped)
			}
			return false
		}
	}
	for _, l := range past[max(0, len(past)-n):] {
		if !send(l) {
			return nil
		}
	}
	for f.flood != nil {
		if !send(*f.flood) {
			return nil
		}
	}
	for {
		select {
		case l, ok := <-f.more:
			if !ok {
				return nil
			}
			if !send(l) {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func logStore(t *testing.T, keys ...string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, k := range keys {
		if err := st.Upsert(ctx, env.Source{Key: k, Kind: env.KindBranch, Branch: k}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// sse is one Server-Sent Event as read, or a comment line.
type sse struct{ event, data, comment string }

// readEvents reads events (and counts comment lines) from r until it
// ends, calling each with every event; each returns false to stop.
func readEvents(r io.Reader, each func(sse) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	var ev sse
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev != (sse{}) && !each(ev) {
				return nil
			}
			ev = sse{}
		case strings.HasPrefix(line, ":"):
			if !each(sse{comment: line}) {
				return nil
			}
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if ev.data != "" {
				return fmt.Errorf("two data lines in one event: %q", line)
			}
			ev.data = strings.TrimPrefix(line, "data: ")
		default:
			return fmt.Errorf("not a line of an event: %q", line)
		}
	}
	return sc.Err()
}

// TestFollowLogs: ?follow=true is a text/event-stream of the past n lines
// then of each new one, one "event: log" each with the env.LogLine as
// JSON on one data line, ending with "event: end" when the follow ends
// (the environment went); bad input and no logs answer before the
// stream starts.
func TestFollowLogs(t *testing.T) {
	st := logStore(t, "pr-1", "pr-2")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fl := &follower{
		past: map[string][]env.LogLine{"pr-1": {
			{Step: "build", Text: "one"},
			{Step: "build", Text: `two "quoted" <b>&</b> \ ` + "\u2028 \r"},
			{Step: "run", Text: "three", Time: at},
		}},
		more: make(chan env.LogLine),
	}
	srv := httptest.NewServer(New(Options{Store: st, Logs: logs{"pr-1", "plain\n"}, Follower: fl}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/v1/environments/pr-1/logs?follow=true&n=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("follow: %s %v", resp.Status, resp.Header)
	}
	var got []env.LogLine
	var end string
	moreSent := false
	err = readEvents(resp.Body, func(ev sse) bool {
		switch ev.event {
		case "log":
			var l env.LogLine
			if err := json.Unmarshal([]byte(ev.data), &l); err != nil {
				t.Fatalf("log data %q: %v", ev.data, err)
			}
			got = append(got, l)
		case "end":
			end = ev.data
			return false
		case "":
			return true // a comment
		default:
			t.Fatalf("event %q", ev.event)
		}
		if len(got) == 2 && !moreSent {
			// Written after the stream started: it comes as it is
			// written, and then the environment goes.
			moreSent = true
			go func() {
				fl.more <- env.LogLine{Step: "run", Text: "later"}
				close(fl.more)
			}()
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []env.LogLine{fl.past["pr-1"][1], fl.past["pr-1"][2], {Step: "run", Text: "later"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if end != `{"message":"the log ended"}` {
		t.Errorf("end event data %q", end)
	}

	for name, tc := range map[string]struct {
		path   string
		status int
		want   string
	}{
		"unknown key":    {"/api/v1/environments/pr-9/logs?follow=true", 404, "environment not found: pr-9"},
		"no logs":        {"/api/v1/environments/pr-2/logs?follow=true", 404, "pr-2 has not run here"},
		"bad n":          {"/api/v1/environments/pr-1/logs?follow=true&n=many", 400, `n: \"many\" is not a number`},
		"negative n":     {"/api/v1/environments/pr-1/logs?follow=true&n=-1", 400, "is not a number of lines (0 to 5000)"},
		"bad follow":     {"/api/v1/environments/pr-1/logs?follow=yes", 400, `follow: \"yes\" is not true or false`},
		"bad key":        {"/api/v1/environments/PR_1/logs?follow=true", 400, ""},
		"plain as today": {"/api/v1/environments/pr-1/logs", 200, "plain\n"},
		"plain, n":       {"/api/v1/environments/pr-1/logs?n=5&follow=false", 200, "plain\n"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Errorf("%d %s; want %d with %q", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}

	// n: 100 by default, at most 5000.
	fl.mu.Lock()
	fl.asked = nil
	fl.mu.Unlock()
	for _, q := range []string{"", "&n=99999", "&n=0"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/environments/pr-1/logs?follow=1"+q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		resp.Body.Close()
	}
	fl.mu.Lock()
	if fmt.Sprint(fl.asked) != "[100 5000 0]" {
		t.Errorf("Follow asked for %v lines, want [100 5000 0]", fl.asked)
	}
	fl.mu.Unlock()

	// A runtime that cannot follow says so.
	none := httptest.NewServer(New(Options{Store: st, Logs: logs{"pr-1", "plain\n"}}))
	defer none.Close()
	resp, err = http.Get(none.URL + "/api/v1/environments/pr-1/logs?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(b), "cannot be followed") {
		t.Errorf("follow without a Follower: %d %s", resp.StatusCode, b)
	}
}

// TestFollowLogsSlowClient: a client that stops reading never holds up
// the follower: once what waits for it is more than the bounded queue,
// the follow is stopped, and the client, if it reads again, gets what
// was queued, then an "end" saying it was dropped.
func TestFollowLogsSlowClient(t *testing.T) {
	st := logStore(t, "pr-1")
	line := env.LogLine{Step: "run", Text: strings.Repeat("x", 1000)}
	fl := &follower{past: map[string][]env.LogLine{"pr-1": nil}, flood: &line, stopped: make(chan struct{})}
	srv := httptest.NewServer(New(Options{Store: st, Follower: fl}))
	defer srv.Close()

	// A connection that reads nothing until the follow has stopped.
	u, _ := url.Parse(srv.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/environments/pr-1/logs?follow=true HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host)
	select {
	case <-fl.stopped:
	case <-time.After(30 * time.Second):
		fl.mu.Lock()
		t.Fatalf("the follower was not stopped within 30s (%d lines sent)", fl.sent)
	}
	fl.mu.Lock()
	sent := fl.sent
	fl.mu.Unlock()

	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, end := 0, ""
	if err := readEvents(resp.Body, func(ev sse) bool {
		if ev.event == "log" {
			n++
		} else if ev.event != "" {
			end = ev.event + " " + ev.data
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if end != `end {"message":"the client reads too slowly: stream dropped"}` || n == 0 || n > sent {
		t.Errorf("the slow client got %d of %d lines, then %q", n, sent, end)
	}
}

// TestFollowLogsRoles: following needs the viewer role, as the logs do.
func TestFollowLogsRoles(t *testing.T) {
	st := logStore(t, "pr-1")
	fl := &follower{past: map[string][]env.LogLine{"pr-1": {{Step: "run", Text: "hello"}}}, more: make(chan env.LogLine)}
	a := auth.New(auth.Options{Tokens: tokens(), Revocations: st})
	srv := httptest.NewServer(New(Options{Store: st, Follower: fl, Auth: a}))
	defer srv.Close()
	for token, want := range map[string]int{"": 401, wrongToken: 401, viewerToken: 200, operatorToken: 200, adminToken: 200} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/environments/pr-1/logs?follow=true", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Errorf("token %q: %d, want %d", token, resp.StatusCode, want)
		}
		if want == 200 {
			var first string
			readEvents(resp.Body, func(ev sse) bool { first = ev.data; return ev.event == "" })
			if first != `{"step":"run","text":"hello"}` {
				t.Errorf("token %q: first event %q", token, first)
			}
		}
		cancel()
		resp.Body.Close()
	}
}

func TestLogQuery(t *testing.T) {
	for q, want := range map[string]string{
		"":                    "false 200 <nil>",
		"lines=50":            "false 50 <nil>",
		"lines=x":             "false 200 <nil>",
		"lines=999999":        "false 5000 <nil>",
		"n=7":                 "false 7 <nil>",
		"n=7&lines=9":         "false 7 <nil>",
		"follow=true":         "true 100 <nil>",
		"follow=1&n=0":        "true 0 <nil>",
		"follow=true&n=6000":  "true 5000 <nil>",
		"follow=false":        "false 200 <nil>",
		"follow=maybe":        `false 0 follow: "maybe" is not true or false`,
		"n=1.5":               `false 0 n: "1.5" is not a number of lines (0 to 5000)`,
		"follow=true&n=-3":    `false 0 n: "-3" is not a number of lines (0 to 5000)`,
		"follow=true&lines=3": "true 3 <nil>",
	} {
		v, _ := url.ParseQuery(q)
		follow, n, err := logQuery(v)
		if got := fmt.Sprint(follow, n, err); got != want {
			t.Errorf("logQuery(%q) = %s, want %s", q, got, want)
		}
	}
}

// TestFollowLogsWriteTimeout: a stream lives past the server's
// WriteTimeout (each write sets its own deadline).
func TestFollowLogsWriteTimeout(t *testing.T) {
	st := logStore(t, "pr-1")
	fl := &follower{past: map[string][]env.LogLine{"pr-1": {{Step: "run", Text: "first"}}}, more: make(chan env.LogLine)}
	srv := httptest.NewUnstartedServer(New(Options{Store: st, Follower: fl}))
	const timeout = 200 * time.Millisecond
	srv.Config.WriteTimeout = timeout
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/environments/pr-1/logs?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	var got []string
	err = readEvents(resp.Body, func(ev sse) bool {
		if ev.event == "" {
			return true
		}
		got = append(got, ev.data)
		if len(got) == 1 {
			go func() {
				// Past the server's write timeout on purpose.
				time.Sleep(3 * timeout)
				fl.more <- env.LogLine{Step: "run", Text: "second"}
			}()
		}
		return len(got) < 2
	})
	if err != nil || len(got) != 2 || got[1] != `{"step":"run","text":"second"}` {
		t.Errorf("after %v (write timeout %v): %q, %v", time.Since(start), timeout, got, err)
	}
}

// TestFollowLogsHeartbeat: a stream with nothing to send starts anyway
// (its headers do not wait for a first line) and sends a heartbeat
// comment each heartbeat period.
func TestFollowLogsHeartbeat(t *testing.T) {
	st := logStore(t, "pr-1")
	fl := &follower{past: map[string][]env.LogLine{"pr-1": nil}, more: make(chan env.LogLine)}
	s := New(Options{Store: st, Follower: fl})
	pace := streamPace{heartbeat: 20 * time.Millisecond, writeWait: time.Second, firstWait: 10 * time.Millisecond}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.followLogs(w, r, "pr-1", 10, pace)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s %v", resp.Status, resp.Header)
	}
	beats := 0
	err = readEvents(resp.Body, func(ev sse) bool {
		if ev.comment != ": heartbeat" {
			t.Fatalf("%+v, want only heartbeats", ev)
		}
		beats++
		return beats < 3
	})
	if err != nil || beats != 3 {
		t.Errorf("%d heartbeats, %v", beats, err)
	}
}
