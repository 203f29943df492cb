package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// ErrNoStream is returned when the server does not stream what was asked
// (an older previewd without GET /api/v1/events, or whose logs do not
// follow); callers fall back to reading again.
var ErrNoStream = errors.New("previewd does not stream this")

// EventType says what an Event is.
type EventType int

// What Events reports.
const (
	// Connected: the stream is (again) connected; every change saved from
	// here on arrives.
	Connected EventType = iota
	// Changed: Change holds one change of an environment.
	Changed
	// Reset: the server no longer holds the changes after the last one
	// read; read the list again.
	Reset
)

// Event is one thing the event stream says.
type Event struct {
	Type   EventType
	Change env.Change
}

// Events follows GET /api/v1/events, calling fn for each event, from
// after the change lastID (0: from now). When the stream drops (or is
// silent beyond its heartbeats) it reconnects after a backoff growing
// from 0.5 s to 5 s, resuming with Last-Event-ID, and calls fn with
// Connected each time it is connected. It returns when ctx ends (nil),
// when fn returns an error (that error), or when the server refuses the
// stream (an *Error, or ErrNoStream when it has no event stream); errors
// of the network and 5xx answers are retried.
func (c *Client) Events(ctx context.Context, lastID uint64, fn func(Event) error) error {
	backoff := c.minBackoff
	for {
		got, err := c.events(ctx, &lastID, fn)
		var stop stopError
		var ae *Error
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &stop):
			return stop.err
		case errors.Is(err, ErrNoStream):
			return err
		case errors.As(err, &ae) && ae.Status != http.StatusTooManyRequests && ae.Status < 500:
			return err
		}
		if got {
			backoff = c.minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, c.maxBackoff)
	}
}

// stopError carries the callback's error out of a stream.
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }

// events reads one connection of the event stream, advancing *lastID; it
// reports whether anything came (so the backoff starts over).
func (c *Client) events(ctx context.Context, lastID *uint64, fn func(Event) error) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	if *lastID > 0 {
		h.Set("Last-Event-ID", strconv.FormatUint(*lastID, 10))
	}
	resp, err := c.send(ctx, c.stream, http.MethodGet, "/api/v1/events", "", nil, h)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed) {
			return false, fmt.Errorf("%w: %w", ErrNoStream, err)
		}
		return false, err
	}
	defer resp.Body.Close()
	if !eventStream(resp) {
		return false, fmt.Errorf("%w: GET /api/v1/events answered %s", ErrNoStream, resp.Header.Get("Content-Type"))
	}
	if err := fn(Event{Type: Connected}); err != nil {
		return false, stopError{err}
	}
	idle := time.AfterFunc(c.idle, cancel)
	defer idle.Stop()
	got := false
	err = readSSE(resp.Body, func() { idle.Reset(c.idle) }, func(ev sse) error {
		got = true
		if ev.id != "" {
			if id, err := strconv.ParseUint(ev.id, 10, 64); err == nil {
				*lastID = id
			}
		}
		var err error
		switch ev.event {
		case "reset":
			err = fn(Event{Type: Reset})
		case "environment", "message":
			var ch env.Change
			if err := json.Unmarshal([]byte(ev.data), &ch); err != nil {
				return nil // not a change this client knows: skip it
			}
			if ch.ID == 0 {
				ch.ID = *lastID
			}
			err = fn(Event{Type: Changed, Change: ch})
		}
		if err != nil {
			return stopError{err}
		}
		return nil
	})
	if err == nil {
		err = io.ErrUnexpectedEOF // the server ended the stream: reconnect
	}
	return got, err
}

// FollowLogs streams key's output: the last n lines (0: the server's
// default), then each new line as it is written, until ctx ends (nil) or
// fn returns an error (that error). A dropped stream is an error (lines
// carry no id to resume from). A previewd whose logs do not follow
// answers the last lines as text: fn gets each, and FollowLogs returns
// ErrNoStream.
func (c *Client) FollowLogs(ctx context.Context, key string, n int, fn func(env.LogLine) error) error {
	resp, err := c.send(ctx, c.stream, http.MethodGet, logsPath(key, n, true), key, nil, http.Header{"Accept": {"text/event-stream"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !eventStream(resp) {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return c.netError(err)
		}
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			if err := fn(env.LogLine{Text: l}); err != nil {
				return err
			}
		}
		return ErrNoStream
	}
	err = readSSE(resp.Body, func() {}, func(ev sse) error {
		if ev.event != "log" {
			return nil
		}
		var l env.LogLine
		if err := json.Unmarshal([]byte(ev.data), &l); err != nil {
			return nil
		}
		if err := fn(l); err != nil {
			return stopError{err}
		}
		return nil
	})
	var stop stopError
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.As(err, &stop):
		return stop.err
	case err != nil:
		return fmt.Errorf("the log stream of %s dropped: %w", key, err)
	}
	return nil
}

func eventStream(resp *http.Response) bool {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return mt == "text/event-stream"
}

// sse is one Server-Sent Event.
type sse struct {
	id, event, data string
}

// maxEventBytes bounds one line of a stream (a change's message may
// carry a log tail; a log line is at most env.MaxLogLine bytes before
// JSON escaping).
const maxEventBytes = 1 << 20

// readSSE reads Server-Sent Events from r (the WHATWG framing: "field:
// value" lines, an empty line ends an event, lines starting with ":" are
// comments such as heartbeats) and calls fn for each event with data.
// touch is called on each line read. It returns nil at the end of r.
func readSSE(r io.Reader, touch func(), fn func(sse) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventBytes)
	var ev sse
	var data []string
	for sc.Scan() {
		touch()
		line := sc.Text()
		if line == "" {
			if data != nil {
				ev.data = strings.Join(data, "\n")
				if ev.event == "" {
					ev.event = "message"
				}
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev, data = sse{}, nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		}
	}
	return sc.Err()
}
