package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// The log API's limits.
const (
	// maxLogLines bounds ?n=; defaultFollowLines and defaultLogLines
	// are the past lines a follow and a plain answer give without it.
	maxLogLines        = 5000
	defaultFollowLines = 100
	defaultLogLines    = 200
	// logHeartbeat is how often a quiet stream gets a comment line, so
	// proxies and clients see it is alive.
	logHeartbeat = 15 * time.Second
	// logWriteWait bounds each write to the client: one that takes longer
	// ends the stream (the server has no write timeout of its own).
	logWriteWait = 30 * time.Second
	// logFirstWait is how long a follow is given to say it has nothing to
	// follow (404) before the stream starts anyway.
	logFirstWait = 250 * time.Millisecond
	// logQueueLines (beyond the n past lines) and logQueueBytes bound
	// what waits for a client; a client that lets more pile up is
	// dropped.
	logQueueLines = 1024
	logQueueBytes = 8 << 20
)

// logs answers an environment's output: the last n lines as plain text,
// or with ?follow=true a text/event-stream of them and then of each line
// as it is written, each an "event: log" whose data is an env.LogLine,
// with a ": heartbeat" comment every 15 s. A follow that ends on the
// runtime's side (the environment was removed) sends "event: end" with
// {"message": why} last, so a client knows not to reconnect. An unknown
// key and an environment with no logs answer 404 with the reason.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if _, err := s.environment(r.Context(), key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: %s", store.ErrNotFound, key)
		}
		writeError(w, statusOf(err), err)
		return
	}
	follow, n, err := logQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if follow {
		s.followLogs(w, r, key, n, streamPace{heartbeat: logHeartbeat, writeWait: logWriteWait, firstWait: logFirstWait})
		return
	}
	if s.o.Logs == nil {
		writeError(w, http.StatusNotFound, errors.New("this runtime keeps no logs in previewd"))
		return
	}
	out, err := s.o.Logs.Logs(r.Context(), key, n)
	switch {
	case errors.Is(err, runtime.ErrNoLogs):
		writeError(w, http.StatusNotFound, err)
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, out)
}

// logQuery reads ?follow= and the number of past lines: ?n= (at most
// maxLogLines; more is capped), or ?lines= as before it (anything but a
// positive number is the default).
func logQuery(q url.Values) (follow bool, n int, err error) {
	if v := q.Get("follow"); v != "" {
		if follow, err = strconv.ParseBool(v); err != nil {
			return false, 0, fmt.Errorf("follow: %q is not true or false", v)
		}
	}
	n = defaultLogLines
	if follow {
		n = defaultFollowLines
	}
	if v := q.Get("n"); v != "" {
		m, err := strconv.Atoi(v)
		if err != nil || m < 0 {
			return false, 0, fmt.Errorf("n: %q is not a number of lines (0 to %d)", v, maxLogLines)
		}
		return follow, min(m, maxLogLines), nil
	}
	if m, err := strconv.Atoi(q.Get("lines")); err == nil && m > 0 {
		n = m
	}
	return follow, min(n, maxLogLines), nil
}

// streamPace is how often a stream sends a heartbeat, how long a write
// may take and how long the first answer may wait (the test seam).
type streamPace struct{ heartbeat, writeWait, firstWait time.Duration }

// followLogs streams key's output from the runtime's Follower. The
// follower is never held up by the client: what it sends goes into a
// bounded queue (logQueue), and a client that lets it fill up is dropped.
func (s *Server) followLogs(w http.ResponseWriter, r *http.Request, key string, n int, pace streamPace) {
	if s.o.Follower == nil {
		writeError(w, http.StatusNotFound, errors.New("this runtime's logs cannot be followed in previewd"))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	q := startFollow(ctx, cancel, s.o.Follower, key, n)
	defer func() {
		cancel()
		for range q.events { // until the follower has returned
		}
	}()

	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{})
	started := false
	send := func(b []byte, flush bool) bool {
		if !started {
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			started = true
		}
		rc.SetWriteDeadline(time.Now().Add(pace.writeWait))
		if len(b) > 0 {
			if _, err := w.Write(b); err != nil {
				return false
			}
		}
		return !flush || rc.Flush() == nil
	}
	drop := func() {
		s.o.Logger.Warn("log stream dropped: the client reads too slowly", "env", key, "remote", remote(r))
		send(endEvent("the client reads too slowly: stream dropped"), true)
	}
	first := time.NewTimer(pace.firstWait)
	defer first.Stop()
	beat := time.NewTicker(pace.heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b, ok := <-q.events:
			if !ok {
				err := q.err
				select {
				case <-q.full:
					drop()
					return
				default:
				}
				switch {
				case !started && errors.Is(err, runtime.ErrNoLogs):
					writeError(w, http.StatusNotFound, err)
				case !started && err != nil:
					writeError(w, http.StatusInternalServerError, err)
				case err != nil:
					if !errors.Is(err, runtime.ErrNoLogs) {
						s.o.Logger.Warn("following logs", "env", key, "err", err)
					}
					send(endEvent(err.Error()), true)
				default:
					send(endEvent("the log ended"), true)
				}
				return
			}
			q.bytes.Add(-int64(len(b)))
			if !send(b, len(q.events) == 0) {
				return
			}
		case <-q.full:
			drop()
			return
		case <-first.C:
			if !started && !send(nil, true) {
				return
			}
		case <-beat.C:
			if !s.stillAllowed(r, auth.Viewer) || !send([]byte(": heartbeat\n\n"), true) {
				return
			}
		}
	}
}

// logQueue is what a follower has sent and its client has not been sent
// yet: encoded events, at most a number of them and of bytes.
type logQueue struct {
	// events is closed once the follower has returned (with err) and
	// all it sent is queued.
	events chan []byte
	err    error
	// bytes is the size of what events holds; full is closed when a line
	// did not fit.
	bytes atomic.Int64
	full  chan struct{}
}

// startFollow runs f.Follow(ctx, key, n) into a new queue. When the queue is
// full it cancels ctx, and the rest the follower sends is dropped.
func startFollow(ctx context.Context, cancel context.CancelFunc, f runtime.Follower, key string, n int) *logQueue {
	q := &logQueue{events: make(chan []byte, n+logQueueLines), full: make(chan struct{})}
	lines := make(chan env.LogLine)
	var err error
	go func() {
		err = f.Follow(ctx, key, n, lines)
		close(lines)
	}()
	go func() {
		dropped := false
		for l := range lines {
			if dropped {
				continue
			}
			b := logEvent(l)
			if len(q.events) == cap(q.events) || q.bytes.Load()+int64(len(b)) > logQueueBytes {
				dropped = true
				close(q.full)
				cancel()
				continue
			}
			q.bytes.Add(int64(len(b)))
			q.events <- b
		}
		q.err = err
		close(q.events)
	}()
	return q
}

// logEvent is l as a Server-Sent Event.
func logEvent(l env.LogLine) []byte {
	data, err := json.Marshal(l)
	if err != nil {
		panic("marshalling a log line: " + err.Error()) // strings and a time: cannot happen
	}
	b := make([]byte, 0, len(data)+20)
	b = append(b, "event: log\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// endEvent tells the client why the stream ends.
func endEvent(message string) []byte {
	data, _ := json.Marshal(map[string]string{"message": message})
	return append(append([]byte("event: end\ndata: "), data...), "\n\n"...)
}
