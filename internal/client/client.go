package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Client talks to one previewd's API.
type Client struct {
	server string
	token  string
	// http makes the short requests (with a timeout); stream the
	// streams' (bounded by their context only).
	http, stream *http.Client
	// backoff bounds the wait before each reconnection of a stream.
	minBackoff, maxBackoff time.Duration
	// idle is how long a stream may stay silent (the server sends a
	// heartbeat every 15 s) before it counts as dropped.
	idle time.Duration
}

// Timeout bounds each request that is not a stream.
const Timeout = 30 * time.Second

// New returns a client of the previewd at server (a base URL such as
// http://127.0.0.1:8080) sending token, if not empty, as its bearer token.
func New(server, token string) *Client {
	return &Client{
		server:     strings.TrimRight(server, "/"),
		token:      token,
		http:       &http.Client{Timeout: Timeout},
		stream:     &http.Client{},
		minBackoff: 500 * time.Millisecond,
		maxBackoff: 5 * time.Second,
		idle:       45 * time.Second,
	}
}

// Server is the base URL the client talks to.
func (c *Client) Server() string { return c.server }

// Error is an answer that is not a success: its status and the server's
// message ({"error": "..."}, or the start of a body that is not JSON).
type Error struct {
	Server  string
	Status  int
	Message string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("previewd at %s answered %d %s", e.Server, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// NotFoundError is the answer for an environment previewd does not know.
type NotFoundError struct {
	Key string
	// Err is the server's answer.
	Err *Error
}

func (e *NotFoundError) Error() string { return "no environment " + e.Key }
func (e *NotFoundError) Unwrap() error { return e.Err }

// notFoundMessage is how the API's 404 for an unknown environment
// begins (the store's ErrNotFound); other 404s (no logs, a route an older
// previewd lacks) are plain *Errors.
const notFoundMessage = "environment not found"

// Environment is one environment as GET /api/v1/environments/{key}
// answers it: with its recent events, and whether it is down on request.
type Environment struct {
	env.Environment
	Down bool `json:"down,omitempty"`
}

// List is GET /api/v1/environments's answer.
type List struct {
	Environments []env.Environment `json:"environments"`
	Source       *SourceStatus     `json:"source,omitempty"`
}

// SourceStatus says whether the last listing of the forge worked.
type SourceStatus struct {
	OK       bool       `json:"ok"`
	Error    string     `json:"error,omitempty"`
	LastSync *time.Time `json:"lastSync,omitempty"`
}

// Answer is what an action answers (202).
type Answer = env.Answer

// List returns the live environments.
func (c *Client) List(ctx context.Context) (List, error) {
	var l List
	err := c.do(ctx, http.MethodGet, "/api/v1/environments", "", nil, &l)
	if l.Environments == nil {
		l.Environments = []env.Environment{}
	}
	return l, err
}

// Get returns one environment with its recent events.
func (c *Client) Get(ctx context.Context, key string) (Environment, error) {
	var e Environment
	err := c.do(ctx, http.MethodGet, envPath(key, ""), key, nil, &e)
	return e, err
}

// Logs returns the last n lines (0: the server's default) of key's build,
// migrate and app output, as text.
func (c *Client) Logs(ctx context.Context, key string, n int) (string, error) {
	resp, err := c.send(ctx, c.http, http.MethodGet, logsPath(key, n, false), key, nil, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", c.netError(err)
	}
	return string(b), nil
}

// Redeploy asks for key's SHA to be deployed again, even one that failed.
func (c *Client) Redeploy(ctx context.Context, key string) (Answer, error) {
	return c.act(ctx, key, "redeploy", nil)
}

// ResetDB asks for key's preview to get a fresh database (the template or
// seed, then its migrations), built while the old one serves.
func (c *Client) ResetDB(ctx context.Context, key string) (Answer, error) {
	return c.act(ctx, key, "reset-db", nil)
}

// DBTier chooses key's database tier (schema, clone, empty, or default
// for the configured one), as /preview db does; a different tier is
// re-provisioned.
func (c *Client) DBTier(ctx context.Context, key, tier string) (Answer, error) {
	return c.act(ctx, key, "db-tier", map[string]string{"tier": tier})
}

// Sleep puts key's preview to sleep.
func (c *Client) Sleep(ctx context.Context, key string) (Answer, error) {
	return c.act(ctx, key, "sleep", nil)
}

// Wake starts key's sleeping (or queued) preview again.
func (c *Client) Wake(ctx context.Context, key string) (Answer, error) {
	return c.act(ctx, key, "wake", nil)
}

// Extend keeps key's preview from expiring for dur from now (a Go
// duration or days and weeks: 12h, 3d, 2w; the server checks it).
func (c *Client) Extend(ctx context.Context, key, dur string) (Answer, error) {
	return c.act(ctx, key, "extend", map[string]string{"duration": dur})
}

// Down removes key's environment and keeps it removed until Up (admin).
func (c *Client) Down(ctx context.Context, key string) (Answer, error) {
	return c.act(ctx, key, "down", nil)
}

// Up deploys an environment put down again.
func (c *Client) Up(ctx context.Context, key string) (Answer, error) {
	return c.act(ctx, key, "up", nil)
}

func (c *Client) act(ctx context.Context, key, action string, body any) (Answer, error) {
	var a Answer
	err := c.do(ctx, http.MethodPost, envPath(key, action), key, body, &a)
	if a.Key == "" && err == nil {
		a.Key, a.Action = key, action
	}
	return a, err
}

func envPath(key, action string) string {
	p := "/api/v1/environments/" + url.PathEscape(key)
	if action != "" {
		p += "/" + action
	}
	return p
}

func logsPath(key string, n int, follow bool) string {
	q := url.Values{}
	if n > 0 {
		q.Set("lines", strconv.Itoa(n))
	}
	if follow {
		q.Set("follow", "true")
	}
	p := envPath(key, "logs")
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// do sends a request with body (JSON, if not nil) and decodes a
// successful answer into out. key, if not empty, names the environment
// a 404 is about.
func (c *Client) do(ctx context.Context, method, path, key string, body, out any) error {
	resp, err := c.send(ctx, c.http, method, path, key, body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("reading the answer of previewd at %s: %w", c.server, err)
	}
	return nil
}

// send sends a request and returns a successful (2xx) response; any other
// becomes an *Error (or *NotFoundError).
func (c *Client) send(ctx context.Context, hc *http.Client, method, path, key string, body any, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return nil, fmt.Errorf("previewd at %s: %w", c.server, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", "previewd-cli")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, c.netError(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, c.answerError(resp, key)
}

// netError says that previewd could not be asked (nothing listening, a
// timeout, a dropped connection).
func (c *Client) netError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("asking previewd at %s: %w", c.server, err)
}

// answerError reads a refused answer's message.
func (c *Client) answerError(resp *http.Response, key string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	e := &Error{Server: c.server, Status: resp.StatusCode, Message: message(b)}
	if resp.StatusCode == http.StatusNotFound && key != "" && strings.HasPrefix(e.Message, notFoundMessage) {
		return &NotFoundError{Key: key, Err: e}
	}
	return e
}

// message is the server's {"error": "..."}, or else the first line of
// the body.
func message(b []byte) string {
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &v) == nil && v.Error != "" {
		return v.Error
	}
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
