package githubapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RateLimitedError is returned without asking GitHub when a rate limit is
// known to last longer than the client is willing to wait.
type RateLimitedError struct {
	Until time.Time
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("github rate limit exceeded until %s", e.Until.UTC().Format(time.RFC3339))
}

// Stats counts what the client sent. Conditional requests answered 304 do
// not count against GitHub's primary rate limit.
type Stats struct {
	// Requests is how many requests reached the network.
	Requests int64
	// NotModified is how many of them were answered 304.
	NotModified int64
	// Retries is how many were sent again after a 5xx or a timeout.
	Retries int64
	// RateLimited is how many answers were rate limits that were waited
	// out.
	RateLimited int64
}

// transport is the http.RoundTripper under every API call. It bounds each
// attempt with a timeout, retries idempotent requests that failed with a
// 5xx or a timeout (with a short backoff), and honours rate limits: after
// a primary limit is exhausted no request is sent before its reset, and a
// secondary limit is waited out for its Retry-After. A wait longer than
// maxWait is not waited: the request fails at once with a
// RateLimitedError, and so does every request until the limit resets, so
// a rate limit never turns into a storm of requests.
type transport struct {
	next    http.RoundTripper
	timeout time.Duration
	maxWait time.Duration
	retries int
	backoff time.Duration
	log     *slog.Logger
	now     func() time.Time

	mu    sync.Mutex
	until time.Time // no request before this

	requests, notModified, retried, limited atomic.Int64
}

// maxLimitWaits is how many rate-limit answers one request waits out
// before it gives up.
const maxLimitWaits = 5

func (t *transport) stats() Stats {
	return Stats{Requests: t.requests.Load(), NotModified: t.notModified.Load(), Retries: t.retried.Load(), RateLimited: t.limited.Load()}
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodPatch:
		// PATCH here only ever sets a comment's whole body: sending it
		// twice is harmless.
		return true
	}
	return false
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	canRetry := idempotent(req.Method) && (req.Body == nil || req.GetBody != nil)
	failures, waits := 0, 0
	for {
		if err := t.waitTurn(ctx); err != nil {
			return nil, err
		}
		actx, cancel := context.WithTimeout(ctx, t.timeout)
		r := req.Clone(actx)
		if (failures > 0 || waits > 0) && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				cancel()
				return nil, err
			}
			r.Body = body
		}
		resp, err := t.next.RoundTrip(r)
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if canRetry && failures < t.retries {
				failures++
				t.retried.Add(1)
				t.log.Debug("retrying github request", "method", req.Method, "path", req.URL.Path, "err", err)
				if err := sleep(ctx, t.delay(failures)); err != nil {
					return nil, err
				}
				continue
			}
			return nil, err
		}
		t.requests.Add(1)
		if resp.StatusCode == http.StatusNotModified {
			t.notModified.Add(1)
		}
		t.observe(resp.Header)
		if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests {
			if wait, ok := t.limitWait(resp); ok {
				t.limited.Add(1)
				t.block(t.now().Add(wait))
				if waits < maxLimitWaits {
					waits++
					discard(resp)
					cancel()
					t.log.Warn("github rate limit: waiting", "method", req.Method, "path", req.URL.Path, "wait", wait.Round(time.Millisecond))
					continue
				}
			}
		}
		if resp.StatusCode >= 500 && canRetry && failures < t.retries {
			failures++
			t.retried.Add(1)
			discard(resp)
			cancel()
			if err := sleep(ctx, t.delay(failures)); err != nil {
				return nil, err
			}
			continue
		}
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
}

// waitTurn waits until no rate limit holds, or fails at once when that is
// further away than maxWait.
func (t *transport) waitTurn(ctx context.Context) error {
	t.mu.Lock()
	until := t.until
	t.mu.Unlock()
	d := until.Sub(t.now())
	if d <= 0 {
		return nil
	}
	if d > t.maxWait {
		return &RateLimitedError{Until: until}
	}
	return sleep(ctx, d)
}

func (t *transport) block(until time.Time) {
	t.mu.Lock()
	if until.After(t.until) {
		t.until = until
	}
	t.mu.Unlock()
}

// observe notes an exhausted primary limit from any answer's headers, so
// that the next request waits for the reset instead of being refused.
func (t *transport) observe(h http.Header) {
	if h.Get("X-RateLimit-Remaining") != "0" {
		return
	}
	if reset, ok := resetTime(h); ok {
		t.block(reset)
	}
}

func resetTime(h http.Header) (time.Time, bool) {
	v, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(v, 0).Add(500 * time.Millisecond), true
}

// limitWait tells whether a 403 or 429 is a rate limit and how long to
// wait, following GitHub's documented order: Retry-After; else, with no
// requests remaining, until the reset; else, for a secondary limit, at
// least a minute.
func (t *transport) limitWait(resp *http.Response) (time.Duration, bool) {
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if s, err := strconv.Atoi(strings.TrimSpace(ra)); err == nil && s >= 0 {
			return time.Duration(s) * time.Second, true
		}
		if at, err := http.ParseTime(ra); err == nil {
			return max(at.Sub(t.now()), 0), true
		}
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if reset, ok := resetTime(resp.Header); ok {
			return max(reset.Sub(t.now()), time.Second), true
		}
		return time.Minute, true
	}
	// A secondary limit without Retry-After says so in its message.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if bytes.Contains(bytes.ToLower(body), []byte("secondary rate limit")) || bytes.Contains(bytes.ToLower(body), []byte("abuse detection")) {
		return time.Minute, true
	}
	return 0, false
}

func (t *transport) delay(failures int) time.Duration {
	d := t.backoff << (failures - 1)
	if d > 5*time.Second {
		d = 5 * time.Second
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// cancelBody ends the attempt's timeout once the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// IsRateLimited reports whether err is a rate limit that was not waited
// out.
func IsRateLimited(err error) bool {
	var rl *RateLimitedError
	return errors.As(err, &rl)
}
