package local

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/previewd/previewd/internal/runtime"
)

// Routing and draining. The environment's current process is r.procs[key].
// Every proxied request holds the process it was sent to (inflight), taken
// under r.mu together with the lookup, so a process that is replaced is
// never stopped under a request that chose it: route swaps the current
// process, retire waits until the old one holds no request (bounded by
// DrainTimeout) and only then stops it. A request whose connection to its
// process cannot even be made is sent once more to the current process,
// when repeating it is safe.

// Proxy implements runtime.Router: the handler that forwards a request
// for key to its current process, and false when key has none that runs.
func (r *Runtime) Proxy(key string) (http.Handler, bool) {
	p := r.current(key)
	if p == nil || !p.alive() {
		return nil, false
	}
	return proxyHandler{r: r, key: key}, true
}

type proxyHandler struct {
	r   *Runtime
	key string
}

func (h proxyHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p := h.r.acquire(h.key, nil)
	if p == nil {
		w.Header().Set("Retry-After", "2")
		http.Error(w, "the environment is not serving", http.StatusServiceUnavailable)
		return
	}
	h.r.serve(w, req, &held{key: h.key, procs: []*proc{p}})
}

// held is what one proxied request holds: the process it was sent to, and
// the one it was sent to again, if any.
type held struct {
	key   string
	procs []*proc
}

type heldKey struct{}

// serve proxies req to the last process h holds, and lets go of them all
// once the response is written.
func (r *Runtime) serve(w http.ResponseWriter, req *http.Request, h *held) {
	defer func() {
		for _, p := range h.procs {
			r.release(p)
		}
	}()
	r.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), heldKey{}, h)))
}

// acquire returns the current process of key with one more request held
// on it, or nil when there is none (or it is not). The lookup and the
// count are one step under r.mu, which route also holds to swap.
func (r *Runtime) acquire(key string, not *proc) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.procs[key]
	if p == nil || p == not || p.stopping || !p.alive() {
		return nil
	}
	p.inflight++
	return p
}

func (r *Runtime) release(p *proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.inflight--
	r.idleIfDrained(p)
}

// idleIfDrained closes p.idle once p is retired and serves nothing. r.mu
// is held.
func (r *Runtime) idleIfDrained(p *proc) {
	if p.retired && p.inflight == 0 {
		select {
		case <-p.idle:
		default:
			close(p.idle)
		}
	}
}

// route makes p the environment's current process and returns the one it
// replaces.
func (r *Runtime) route(p *proc) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.procs[p.Key]
	r.procs[p.Key] = p
	return old
}

// retire stops p, a process that no longer is current, once the requests
// it serves are done, DrainTimeout is over, it exits, or ctx ends.
func (r *Runtime) retire(ctx context.Context, p *proc) error {
	r.mu.Lock()
	p.retired = true
	r.idleIfDrained(p)
	r.mu.Unlock()
	t := time.NewTimer(r.o.DrainTimeout)
	defer t.Stop()
	select {
	case <-p.idle:
	case <-p.done:
	case <-ctx.Done():
	case <-t.C:
		r.mu.Lock()
		n := p.inflight
		r.mu.Unlock()
		r.log.Warn("drain timed out", "env", p.Key, "pid", p.PID, "inflight", n, "took", r.o.DrainTimeout)
	}
	// Stopped even when ctx has ended (previewd shuts down): it was
	// replaced, and its inventory item must go with it.
	return r.stop(context.WithoutCancel(ctx), p)
}

// newProxy is the reverse proxy every environment's requests go through.
// The process a request goes to is in its context (held).
func (r *Runtime) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			h := pr.In.Context().Value(heldKey{}).(*held)
			pr.SetURL(&url.URL{Scheme: "http", Host: h.procs[0].addr()})
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: retryTransport{r: r},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			r.log.Warn("proxying", "host", req.Host, "err", err)
			http.Error(w, "the environment did not answer: "+err.Error(), http.StatusBadGateway)
		},
		FlushInterval: -1,
	}
}

// retryTransport sends a request over its process's own connections, and
// once more to the environment's current process if the first could not
// connect and the request is safe to repeat.
type retryTransport struct{ r *Runtime }

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := req.Context().Value(heldKey{}).(*held)
	p := h.procs[len(h.procs)-1]
	resp, err := p.transport.RoundTrip(req)
	if err == nil || !runtime.DialFailed(err) || !runtime.Repeatable(req) {
		return resp, err
	}
	q := t.r.acquire(h.key, p)
	if q == nil {
		return nil, err
	}
	h.procs = append(h.procs, q)
	again := req.Clone(req.Context())
	again.URL.Host = q.addr()
	resp, qerr := q.transport.RoundTrip(again)
	if qerr != nil {
		return nil, fmt.Errorf("%w; again on the current process: %w", err, qerr)
	}
	return resp, nil
}
