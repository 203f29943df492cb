package githubapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v88/github"
)

// DefaultAPIURL is github.com's REST API.
const DefaultAPIURL = "https://api.github.com/"

// App names a GitHub App installation.
type App struct {
	ID, InstallationID int64
	// PrivateKey is the App's PEM key; PrivateKeyFile is read when it is
	// empty.
	PrivateKey     []byte
	PrivateKeyFile string
}

// Options configure a Client.
type Options struct {
	// APIURL is the REST API's base URL. Default DefaultAPIURL; any other
	// is GitHub Enterprise Server (/api/v3/ is added when missing).
	APIURL string
	// Owner and Repo name the repository.
	Owner, Repo string
	// Token authenticates; App is used instead when set.
	Token string
	App   *App
	// RequestTimeout bounds each attempt. Default 30s.
	RequestTimeout time.Duration
	// MaxWait is the longest a request waits for a rate limit to reset
	// before it fails. Default 5m.
	MaxWait time.Duration
	// Retries is how often a request failing with 5xx or a timeout is
	// sent again. Default 4.
	Retries int
	// Backoff is the first retry's delay; it doubles. Default 100ms.
	Backoff time.Duration
	// Transport is the HTTP transport. Default a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Client is an authenticated go-github client for one repository, with
// retries and rate-limit handling under it.
type Client struct {
	api         *gh.Client
	owner, repo string
	token       func(ctx context.Context) (string, error)
	t           *transport
}

// New returns a Client. It sends nothing until it is used.
func New(o Options) (*Client, error) {
	if o.Owner == "" || o.Repo == "" {
		return nil, errors.New("github: owner and repo are required")
	}
	if o.APIURL == "" {
		o.APIURL = DefaultAPIURL
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Minute
	}
	if o.Retries == 0 {
		o.Retries = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	base := o.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	opts := []gh.ClientOptionsFunc{gh.WithDisableRateLimitCheck(), gh.WithUserAgent("previewd")}
	if strings.TrimSuffix(o.APIURL, "/") != strings.TrimSuffix(DefaultAPIURL, "/") {
		opts = append(opts, gh.WithEnterpriseURLs(o.APIURL, o.APIURL))
	}
	// Resolve the base URL first: the App transport needs it too.
	probe, err := gh.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("github api url: %w", err)
	}
	c := &Client{owner: o.Owner, repo: o.Repo}
	var auth http.RoundTripper
	switch {
	case o.App != nil:
		key := o.App.PrivateKey
		if len(key) == 0 {
			if key, err = os.ReadFile(o.App.PrivateKeyFile); err != nil {
				return nil, fmt.Errorf("reading the app's private key: %w", err)
			}
		}
		itr, err := ghinstallation.New(base, o.App.ID, o.App.InstallationID, key)
		if err != nil {
			return nil, fmt.Errorf("github app: %w", err)
		}
		itr.BaseURL = strings.TrimSuffix(probe.BaseURL(), "/")
		auth, c.token = itr, itr.Token
	default:
		token := o.Token
		auth = roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if token != "" {
				r = r.Clone(r.Context())
				r.Header.Set("Authorization", "Bearer "+token)
			}
			return base.RoundTrip(r)
		})
		c.token = func(context.Context) (string, error) { return token, nil }
	}
	c.t = &transport{
		next: auth, timeout: o.RequestTimeout, maxWait: o.MaxWait, retries: o.Retries, backoff: o.Backoff,
		log: o.Logger, now: time.Now,
	}
	c.api, err = gh.NewClient(append(opts, gh.WithHTTPClient(&http.Client{Transport: c.t}))...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// API returns the go-github client.
func (c *Client) API() *gh.Client { return c.api }

// Owner returns the repository's owner.
func (c *Client) Owner() string { return c.owner }

// Repo returns the repository's name.
func (c *Client) Repo() string { return c.repo }

// Stats returns what the client has sent so far.
func (c *Client) Stats() Stats { return c.t.stats() }

// Token returns the token requests are sent with: the configured one, or
// the App installation's current one (renewed when it nears its expiry).
// It is empty when the client has none.
func (c *Client) Token(ctx context.Context) (string, error) { return c.token(ctx) }

// ErrNotModified is what Get returns for a 304.
var ErrNotModified = errors.New("not modified")

// Get sends a conditional GET for path (relative to the API, or an
// absolute URL on the API's host, as Link headers give), with
// If-None-Match when etag is set: an unchanged answer costs no rate
// limit. It returns the body, the new ETag and the Link header's next
// URL; ErrNotModified for a 304; and a *gh.ErrorResponse for other errors
// (404 included). go-github's typed services cannot send If-None-Match,
// so listings polled often come through here; everything else uses API.
func (c *Client) Get(ctx context.Context, path, etag string) (body []byte, newTag, next string, err error) {
	req, err := c.api.NewRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, "", "", err
	}
	if base, perr := url.Parse(c.api.BaseURL()); perr == nil && req.URL.Host != base.Host {
		return nil, "", "", fmt.Errorf("refusing to follow %s: not the API's host", req.URL.Redacted())
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.api.BareDo(req)
	if resp != nil && resp.StatusCode == http.StatusNotModified {
		return nil, etag, "", ErrNotModified
	}
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", "", fmt.Errorf("reading %s: %w", req.URL.Path, err)
	}
	return body, resp.Header.Get("ETag"), nextLink(resp.Header.Get("Link")), nil
}

// nextLink returns the rel="next" URL of a Link header.
func nextLink(h string) string {
	for part := range strings.SplitSeq(h, ",") {
		u, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			if strings.TrimSpace(p) == `rel="next"` {
				return strings.Trim(strings.TrimSpace(u), "<>")
			}
		}
	}
	return ""
}

// IsNotFound reports whether err is GitHub's 404.
func IsNotFound(err error) bool {
	var er *gh.ErrorResponse
	return errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound
}
