package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/events"
	"github.com/previewd/previewd/internal/store"
)

// sseEvent is one block of a Server-Sent Events stream.
type sseEvent struct {
	ID, Event, Data, Retry string
	HasID                  bool
	Comments               []string
}

// sseReader parses a stream as the HTML spec's EventSource does: fields
// up to a blank line, ":" comments, "field: value" with one optional
// space.
type sseReader struct {
	br *bufio.Reader
}

func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return ev, nil
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			ev.Comments = append(ev.Comments, strings.TrimPrefix(c, " "))
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID, ev.HasID = value, true
		case "event":
			ev.Event = value
		case "data":
			if ev.Data != "" {
				ev.Data += "\n"
			}
			ev.Data += value
		case "retry":
			ev.Retry = value
		default:
			return ev, fmt.Errorf("unknown field %q", field)
		}
	}
}

// change reads the next block, skipping heartbeats, and decodes it as a
// change.
func (r *sseReader) change(t *testing.T) env.Change {
	t.Helper()
	for {
		ev, err := r.next()
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if ev.Event == "" && ev.Data == "" {
			continue // a heartbeat
		}
		if ev.Event != "environment" || strings.Contains(ev.Data, "\n") {
			t.Fatalf("event %q with data %q, want one line of environment", ev.Event, ev.Data)
		}
		var c env.Change
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
			t.Fatalf("data %q: %v", ev.Data, err)
		}
		if ev.ID != fmt.Sprint(c.ID) {
			t.Fatalf("id: %q, but the change's is %d", ev.ID, c.ID)
		}
		return c
	}
}

// eventsFixture is a real server on a real listener and a real store,
// streaming a hub's changes.
type eventsFixture struct {
	t   *testing.T
	st  *store.Store
	hub *events.Hub
	srv *httptest.Server
}

func newEventsFixture(t *testing.T, o events.Options, a *auth.Authenticator) *eventsFixture {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &eventsFixture{t: t, st: st, hub: events.New(o)}
	s := New(Options{Store: st, Auth: a, Events: f.hub})
	f.srv = httptest.NewUnstartedServer(s)
	t.Cleanup(func() {
		f.hub.Close()
		f.srv.Close()
	})
	return f
}

// start starts the server; call it once.
func (f *eventsFixture) start() *eventsFixture {
	f.srv.Start()
	return f
}

// set saves an environment's status in the store and tells the hub, as
// the reconciler does; it returns the notice.
func (f *eventsFixture) set(key string, status env.Status, u store.Update) env.Notice {
	f.t.Helper()
	ctx := context.Background()
	src := env.Source{Key: key, Kind: env.KindPullRequest, Number: 7, Branch: "feature/x", SHA: "0123456789abcdef0123456789abcdef01234567"}
	if err := f.st.Upsert(ctx, src); err != nil {
		f.t.Fatal(err)
	}
	msg := string(status) + " " + env.ShortSHA(src.SHA)
	u.Status, u.Message, u.SHA = &status, &msg, &src.SHA
	if err := f.st.Set(ctx, key, u); err != nil {
		f.t.Fatal(err)
	}
	e, err := f.st.Get(ctx, key)
	if err != nil {
		f.t.Fatal(err)
	}
	n := env.Notice{Env: e, Source: src, Reason: "Test", Took: 1200 * time.Millisecond}
	if err := f.hub.Notify(ctx, n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// open connects to the stream; header values "" are left out.
func (f *eventsFixture) open(path, token string, header map[string]string) (*http.Response, *sseReader) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	f.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", f.srv.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { resp.Body.Close() })
	return resp, &sseReader{br: bufio.NewReader(resp.Body)}
}

// stream connects and checks the answer and the first block, which it
// returns.
func (f *eventsFixture) stream(path string, header map[string]string) (*sseReader, sseEvent) {
	f.t.Helper()
	resp, r := f.open(path, "", header)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("GET %s: %s: %s", path, resp.Status, body(f.t, resp))
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			f.t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	first, err := r.next()
	if err != nil {
		f.t.Fatal(err)
	}
	if first.Retry != "2000" {
		f.t.Fatalf("first block %+v, want retry: 2000", first)
	}
	return r, first
}

// TestEventsFraming: a fresh stream starts with retry and the id so
// far (no data); each change is one event "environment" with its id and
// the change as one line of JSON, multi-line messages included.
func TestEventsFraming(t *testing.T) {
	f := newEventsFixture(t, events.Options{}, nil).start()
	before := f.set("pr-7", env.StatusPending, store.Update{})
	r, first := f.stream("/api/v1/events", nil)
	if !first.HasID || first.Data != "" || first.Event != "" {
		t.Fatalf("first block %+v, want the last id and no data", first)
	}
	f.set("pr-7", env.StatusBuilding, store.Update{})
	msg := "migrate failed\nline two"
	f.set("pr-8", env.StatusFailed, store.Update{Message: &msg})
	c := r.change(t)
	if fmt.Sprint(c.ID-1) != first.ID {
		t.Errorf("first change %d after id %s", c.ID, first.ID)
	}
	if c.Key != "pr-7" || c.Status != env.StatusBuilding || c.Kind != env.KindPullRequest || c.Number != 7 || c.Branch != "feature/x" ||
		c.SHA != before.Source.SHA || c.Message != "building 0123456" || c.Reason != "Test" || c.TookMS != 1200 || c.Time.IsZero() || c.StepStartedAt.IsZero() || c.Removed {
		t.Errorf("change: %+v", c)
	}
	if c2 := r.change(t); c2.ID != c.ID+1 || c2.Key != "pr-8" || c2.Status != env.StatusFailed || c2.Message != "failed 0123456" {
		t.Errorf("second change: %+v", c2)
	}
}

// TestEventsResume: Last-Event-ID (or ?lastEventId=) gets exactly the
// changes after it, then the new ones; one older than the hub holds
// gets a reset (with the id to go on from) first.
func TestEventsResume(t *testing.T) {
	f := newEventsFixture(t, events.Options{Size: 4}, nil).start()
	var ids []uint64
	_, first := f.stream("/api/v1/events", nil)
	for i := range 6 {
		f.set(fmt.Sprintf("pr-%d", i), env.StatusBuilding, store.Update{})
		ids = append(ids, mustID(t, first.ID)+uint64(i)+1)
	}
	check := func(name string, r *sseReader, want []uint64) {
		t.Helper()
		for _, id := range want {
			if c := r.change(t); c.ID != id || c.Key != fmt.Sprintf("pr-%d", id-ids[0]) {
				t.Fatalf("%s: change %d (%s), want %d", name, c.ID, c.Key, id)
			}
		}
	}
	r, head := f.stream("/api/v1/events", map[string]string{"Last-Event-ID": fmt.Sprint(ids[3])})
	if head.Event != "" || head.HasID {
		t.Errorf("resumed stream's first block %+v, want retry only", head)
	}
	check("header", r, ids[4:])
	r2, _ := f.stream("/api/v1/events?lastEventId="+fmt.Sprint(ids[1]), nil)
	check("query", r2, ids[2:])
	up, _ := f.stream("/api/v1/events", map[string]string{"Last-Event-ID": fmt.Sprint(ids[5])})
	// Too old: ids[0] and ids[1] are gone with a ring of 4.
	old, _ := f.stream("/api/v1/events", map[string]string{"Last-Event-ID": fmt.Sprint(ids[0])})
	head = next(t, old)
	if head.Event != "reset" || head.Data != "{}" || head.ID != fmt.Sprint(ids[5]) {
		t.Errorf("too old: first block %+v, want event reset, data {}, id %d", head, ids[5])
	}
	// From an earlier run of previewd: its ids are smaller.
	earlier, _ := f.stream("/api/v1/events", map[string]string{"Last-Event-ID": "42"})
	if head = next(t, earlier); head.Event != "reset" {
		t.Errorf("an id of an earlier run: first block %+v, want reset", head)
	}
	f.set("pr-6", env.StatusReady, store.Update{})
	next := ids[5] + 1
	check("after the header's", r, []uint64{next})
	check("after the query's", r2, []uint64{next})
	check("up to date", up, []uint64{next})
	check("after reset", old, []uint64{next})
	if resp, _ := f.open("/api/v1/events", "", map[string]string{"Last-Event-ID": "soon"}); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body(t, resp), `is not an id of this stream`) {
		t.Errorf("bad Last-Event-ID: %s", resp.Status)
	}
}

func next(t *testing.T, r *sseReader) sseEvent {
	t.Helper()
	ev, err := r.next()
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func mustID(t *testing.T, s string) uint64 {
	t.Helper()
	var id uint64
	if _, err := fmt.Sscan(s, &id); err != nil {
		t.Fatalf("id %q: %v", s, err)
	}
	return id
}

// TestEventsHeartbeat: a quiet stream gets a heartbeat comment.
func TestEventsHeartbeat(t *testing.T) {
	f := newEventsFixture(t, events.Options{Heartbeat: 20 * time.Millisecond}, nil).start()
	r, _ := f.stream("/api/v1/events", nil)
	for range 2 {
		ev, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Comments) != 1 || ev.Comments[0] != "heartbeat" || ev.Data != "" || ev.Event != "" {
			t.Fatalf("block %+v, want a heartbeat", ev)
		}
	}
}

// TestEventsRemoved: the removal of an environment is a change marked
// removed.
func TestEventsRemoved(t *testing.T) {
	f := newEventsFixture(t, events.Options{}, nil).start()
	r, _ := f.stream("/api/v1/events", nil)
	f.set("pr-7", env.StatusReady, store.Update{})
	f.set("pr-7", env.StatusDeleting, store.Update{Deleted: true})
	if c := r.change(t); c.Removed {
		t.Errorf("ready change marked removed: %+v", c)
	}
	if c := r.change(t); !c.Removed || c.Key != "pr-7" || c.Status != env.StatusDeleting {
		t.Errorf("removal: %+v", c)
	}
}

// TestEventsRoles: the stream is for viewers and up; without or with a
// wrong token 401; without a hub 503.
func TestEventsRoles(t *testing.T) {
	a := auth.New(auth.Options{Tokens: tokens(), Anonymous: auth.None})
	f := newEventsFixture(t, events.Options{}, a).start()
	for name, tt := range map[string]struct {
		token string
		want  int
	}{
		"none": {"", 401}, "wrong": {wrongToken, 401}, "viewer": {viewerToken, 200}, "operator": {operatorToken, 200}, "admin": {adminToken, 200},
	} {
		t.Run(name, func(t *testing.T) {
			resp, r := f.open("/api/v1/events", tt.token, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("%s, want %d", resp.Status, tt.want)
			}
			if tt.want == 401 {
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				return
			}
			if ev, err := r.next(); err != nil || ev.Retry != "2000" {
				t.Errorf("first block %+v, %v", ev, err)
			}
		})
	}
	// A viewer-anonymous previewd lets anonymous callers watch too.
	open := newEventsFixture(t, events.Options{}, auth.New(auth.Options{Tokens: tokens(), Anonymous: auth.Viewer})).start()
	if resp, _ := open.open("/api/v1/events", "", nil); resp.StatusCode != 200 {
		t.Errorf("anonymous viewer: %s", resp.Status)
	}
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("without a hub: %s", resp.Status)
	}
}

// smallBuffers makes accepted connections' send buffers small, so a
// client that does not read blocks the server's writes soon.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestEventsSlowClient: a client that never reads fills its stream's
// buffer; Notify never waits for it, the hub drops it, and its stream
// is closed at once, whether or not the server is blocked writing to it.
// A reader beside it resumes with its last id and misses nothing.
func TestEventsSlowClient(t *testing.T) {
	f := newEventsFixture(t, events.Options{Buffer: 4, Size: 4096}, nil)
	f.srv.Listener = smallBuffers{f.srv.Listener}
	f.start()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.hub.Subscribers() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled client never subscribed")
		}
		time.Sleep(time.Millisecond)
	}
	// Big messages fill the socket buffers after a few changes.
	ctx := context.Background()
	big := strings.Repeat("x", 16<<10)
	var slowest time.Duration
	for i := 0; f.hub.Subscribers() > 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled client was not dropped after %d changes", i)
		}
		n := env.Notice{Env: env.Environment{Key: fmt.Sprintf("pr-%d", i%50), Status: env.StatusBuilding, Message: big, UpdatedAt: time.Now()}}
		began := time.Now()
		f.hub.Notify(ctx, n)
		slowest = max(slowest, time.Since(began))
	}
	// One that waited on the stalled client would take the write timeout;
	// a loaded machine (-race, a GC) may stall one for a while, so the
	// bound is far from both.
	if slowest > streamWriteTimeout/6 {
		t.Errorf("the slowest Notify took %v while a client stalled (write timeout %v)", slowest, streamWriteTimeout)
	}
	// The stream is closed: after what was buffered, the connection ends
	// (EOF or reset), well before the write deadline.
	conn.SetReadDeadline(time.Now().Add(streamWriteTimeout / 2))
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the stalled stream is still open: %v", err)
	}
}

// TestStreamEndsOnSignOut: an event stream opened with a session ends
// within a heartbeat of its sign-out (a revoked session), as it does when
// the session expires; until then it stays open.
func TestStreamEndsOnSignOut(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a := auth.New(auth.Options{Tokens: tokens(), Sessions: auth.NewSessions([]byte(sessionSecret), time.Hour, nil), Revocations: st})
	hub := events.New(events.Options{Heartbeat: 50 * time.Millisecond})
	srv := httptest.NewServer(New(Options{Store: st, Auth: a, Events: hub}))
	t.Cleanup(func() { hub.Close(); srv.Close() })
	post := func(path string, form url.Values, cookie *http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	cookie := sessionCookie(t, post("/signin", url.Values{"token": {viewerToken}, "next": {"/"}}, nil))

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", srv.URL+"/api/v1/events", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	br := bufio.NewReader(resp.Body)
	beats := 0
	for beats < 2 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended before the sign-out: %v", err)
		}
		if strings.HasPrefix(line, ": heartbeat") {
			beats++
		}
	}
	if resp := post("/signout", nil, cookie); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %s", resp.Status)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("the stream after the sign-out: %v, want it ended by the server", err)
	}
	if sctx.Err() != nil {
		t.Fatal("the stream outlived its sign-out until the test gave up")
	}
}
