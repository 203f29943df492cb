package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/previewd/previewd/internal/auth"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/events"
)

// streamWriteTimeout bounds one write of a stream (an event, a
// heartbeat): a client that takes longer to take it is cut off. Each
// write sets its own deadline, so no server-wide write timeout ever cuts
// a stream that keeps flowing.
const streamWriteTimeout = 30 * time.Second

// retryMS is the reconnection delay the stream asks clients for.
const retryMS = 2000

// events streams the environment changes as Server-Sent Events, in the
// framing env.Change documents: "retry: 2000" first, then one event
// "environment" per change with its id, a heartbeat comment when quiet,
// and "reset" first when the changes after the client's Last-Event-ID
// (or ?lastEventId=) are no longer held. A fresh stream's first block
// also carries the id of the last change so far (with no data, so
// nothing is dispatched): a client that reconnects before any change
// then resumes from there and misses nothing.
//
// The stream ends when the hub drops the client for falling behind (it
// reconnects with its Last-Event-ID and gets what it missed), when the
// client goes, or when previewd stops.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	hub := s.o.Events
	if hub == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("no event stream here"))
		return
	}
	lastID, given, err := lastEventID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	sub := hub.Subscribe(lastID)
	defer sub.Cancel()
	rc := http.NewResponseController(w)
	// A write blocked on a client that does not read ends as soon as the
	// hub drops it (or previewd stops): the watch moves the deadline to
	// now, and no later write moves it back. The watch ends before the
	// handler does: the connection is not touched after.
	var (
		mu  sync.Mutex
		cut bool
	)
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-sub.Done():
			mu.Lock()
			cut = true
			rc.SetWriteDeadline(time.Now())
			mu.Unlock()
		case <-stop:
		}
	})
	defer watch.Wait()
	defer close(stop)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 0, 1024)
	send := func(b []byte) bool {
		mu.Lock()
		if cut {
			mu.Unlock()
			return false
		}
		err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		mu.Unlock()
		// Not supported only by writers that have no deadline anyway.
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	buf = append(buf, "retry: "+strconv.Itoa(retryMS)+"\n"...)
	switch {
	case sub.Reset:
		buf = append(buf, "\nevent: reset\nid: "...)
		buf = strconv.AppendUint(buf, sub.Last, 10)
		buf = append(buf, "\ndata: {}\n"...)
	case !given:
		buf = append(buf, "id: "...)
		buf = strconv.AppendUint(buf, sub.Last, 10)
		buf = append(buf, '\n')
	}
	buf = append(buf, '\n')
	for _, c := range sub.Missed {
		if buf, err = s.frames.append(buf, c); err != nil {
			s.o.Logger.Error("encoding a change", "env", c.Key, "err", err)
			return
		}
	}
	if !send(buf) {
		return
	}
	beat := time.NewTicker(hub.Heartbeat())
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-beat.C:
			if !s.stillAllowed(r, auth.Viewer) || !send([]byte(": heartbeat\n\n")) {
				return
			}
		case c, ok := <-sub.C:
			if !ok {
				if err := sub.Err(); errors.Is(err, events.ErrSlow) {
					s.o.Logger.Info("event stream dropped", "remote", remote(r), "reason", err.Error())
				}
				return
			}
			if buf, err = s.frames.append(buf[:0], c); err != nil {
				s.o.Logger.Error("encoding a change", "env", c.Key, "err", err)
				return
			}
			if !send(buf) {
				return
			}
		}
	}
}

// frames encodes each change once for every stream that sends it: the
// last frameSlots frames, by id (ids are unique, and a change's JSON never
// changes).
type frames struct {
	mu  sync.Mutex
	ids [frameSlots]uint64
	b   [frameSlots][]byte
}

const frameSlots = 256

// append appends c as one event "environment".
func (f *frames) append(buf []byte, c env.Change) ([]byte, error) {
	i := c.ID % frameSlots
	f.mu.Lock()
	if f.ids[i] == c.ID && f.b[i] != nil {
		b := f.b[i]
		f.mu.Unlock()
		return append(buf, b...), nil
	}
	f.mu.Unlock()
	data, err := json.Marshal(c)
	if err != nil {
		return buf, err
	}
	b := make([]byte, 0, len(data)+64)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, c.ID, 10)
	b = append(b, "\nevent: environment\ndata: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	f.mu.Lock()
	f.ids[i], f.b[i] = c.ID, b
	f.mu.Unlock()
	return append(buf, b...), nil
}

// lastEventID is the id a reconnecting client saw last: the
// Last-Event-ID header, else ?lastEventId=; given is false when neither
// is set.
func lastEventID(r *http.Request) (id uint64, given bool, err error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("lastEventId")
	}
	if v == "" {
		return 0, false, nil
	}
	id, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("the last event id %q is not an id of this stream", v)
	}
	return id, true, nil
}
