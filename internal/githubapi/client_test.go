package githubapi

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/ghtest"
)

// TestAppAuth: with a GitHub App, API calls carry the installation token
// that ghinstallation got from the Enterprise API (/api/v3/), and Token
// (what git is given) is the same one.
func TestAppAuth(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	var tokens, calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/v3/app/installations/34/access_tokens":
			if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
				t.Errorf("token request without the App's JWT: %q", r.Header.Get("Authorization"))
			}
			tokens.Add(1)
			w.WriteHeader(http.StatusCreated)
			b := `{"token":"ghs_installation","expires_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
			w.Write([]byte(b))
		case r.URL.Path == "/api/v3/repos/o/r/pulls/1":
			calls.Add(1)
			if got := r.Header.Get("Authorization"); got != "token ghs_installation" {
				t.Errorf("API call with Authorization %q", got)
			}
			w.Write([]byte(`{"number":1}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := New(Options{
		APIURL: srv.URL + "/", Owner: "o", Repo: "r",
		App: &App{ID: 12, InstallationID: 34, PrivateKey: pemKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, _, _, err := c.Get(context.Background(), "repos/o/r/pulls/1", ""); err != nil {
			t.Fatal(err)
		}
	}
	if tokens.Load() != 1 || calls.Load() != 3 {
		t.Errorf("%d token requests, %d calls; want 1 and 3", tokens.Load(), calls.Load())
	}
	// git gets the same token, without asking for another.
	if tok, err := c.Token(context.Background()); err != nil || tok != "ghs_installation" || tokens.Load() != 1 {
		t.Errorf("Token = %q, %v after %d token requests", tok, err, tokens.Load())
	}
}

func newClient(t testing.TB, fake *ghtest.Server, mod func(*Options)) *Client {
	t.Helper()
	o := Options{APIURL: fake.APIURL(), Owner: fake.Owner, Repo: fake.Repo, Token: "t0ken", RequestTimeout: 2 * time.Second, Backoff: 10 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRateLimits: a secondary limit is waited out for its Retry-After and
// a primary one until its reset; 5xx and timeouts are retried; a limit
// longer than MaxWait fails at once, and so do the requests after it,
// without reaching GitHub.
func TestRateLimits(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 1, HeadSHA: "0000000000000000000000000000000000000001"})
	// A slow answer takes 3 s; the client gives up after 1 s, which
	// leaves its retry time to answer on a loaded machine.
	fake.SetFaults(ghtest.Faults{RetryAfter: 1, Delay: 3 * time.Second})
	c := newClient(t, fake, func(o *Options) { o.RequestTimeout = time.Second })
	get := func() (time.Duration, error) {
		t0 := time.Now()
		_, _, _, err := c.Get(context.Background(), "repos/octocat/Hello-World/pulls/1", "")
		return time.Since(t0), err
	}
	tests := []struct {
		name     string
		faults   []ghtest.Fault
		min, max time.Duration
		requests int
	}{
		// The upper bounds only say the client did not hang or wait far
		// beyond what it was told: a loaded machine (-race) is slow.
		{"secondary limit", []ghtest.Fault{ghtest.FaultSecondary}, time.Second, 15 * time.Second, 2},
		{"primary limit", []ghtest.Fault{ghtest.FaultPrimary}, 400 * time.Millisecond, 15 * time.Second, 2},
		{"5xx", []ghtest.Fault{ghtest.Fault5xx, ghtest.Fault5xx}, 0, 10 * time.Second, 3},
		{"timeout", []ghtest.Fault{ghtest.FaultSlow}, 900 * time.Millisecond, 10 * time.Second, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fake.Stats().Requests
			fake.FailNext(tt.faults...)
			took, err := get()
			if err != nil {
				t.Fatal(err)
			}
			reqs := fake.Stats().Requests - before
			if took < tt.min || took > tt.max {
				t.Errorf("took %s, want %s to %s", took, tt.min, tt.max)
			}
			// A slow request the client gave up on may not have reached
			// the counters, and on a loaded machine the retry may time
			// out too.
			if reqs != tt.requests && !(tt.name == "timeout" && reqs >= tt.requests-1 && reqs <= tt.requests+2) {
				t.Errorf("%d requests reached GitHub, want %d", reqs, tt.requests)
			}
		})
	}

	t.Run("longer than MaxWait", func(t *testing.T) {
		fake.SetFaults(ghtest.Faults{RetryAfter: 30})
		c := newClient(t, fake, func(o *Options) { o.MaxWait = 500 * time.Millisecond })
		fake.FailNext(ghtest.FaultSecondary)
		before := fake.Stats().Requests
		t0 := time.Now()
		_, _, _, err := c.Get(context.Background(), "repos/octocat/Hello-World/pulls/1", "")
		if !IsRateLimited(err) {
			t.Fatalf("err = %v, want a rate limit", err)
		}
		_, _, _, err = c.Get(context.Background(), "repos/octocat/Hello-World/pulls/1", "")
		// Far below the 30 s it was told to wait.
		if !IsRateLimited(err) || time.Since(t0) > 15*time.Second {
			t.Fatalf("second request: %v after %s", err, time.Since(t0))
		}
		if reqs := fake.Stats().Requests - before; reqs != 1 {
			t.Errorf("%d requests reached GitHub, want 1", reqs)
		}
	})

	t.Run("context ends the wait", func(t *testing.T) {
		fake.SetFaults(ghtest.Faults{RetryAfter: 30})
		c := newClient(t, fake, nil)
		fake.FailNext(ghtest.FaultSecondary)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		t0 := time.Now()
		_, _, _, err := c.Get(ctx, "repos/octocat/Hello-World/pulls/1", "")
		// Far below the 30 s Retry-After.
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 15*time.Second {
			t.Errorf("err = %v after %s", err, time.Since(t0))
		}
	})
}

// TestNoRetryOfPOSTAfterTimeout: a POST that timed out may have been done;
// it is not sent again blindly (the notifier finds what it made).
func TestNoRetryOfPOSTAfterTimeout(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	c, err := New(Options{APIURL: srv.URL + "/", Owner: "o", Repo: "r", Token: "t", Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := c.API().NewRequest(context.Background(), http.MethodPost, "repos/o/r/deployments", map[string]string{"ref": "x"})
	c.API().Do(req, nil)
	if n.Load() != 1 {
		t.Errorf("POST sent %d times, want 1", n.Load())
	}
	req, _ = c.API().NewRequest(context.Background(), http.MethodGet, "repos/o/r", nil)
	c.API().Do(req, nil)
	if n.Load() != 1+5 {
		t.Errorf("GET sent %d times, want 5 (1 + 4 retries)", n.Load()-1)
	}
}

func TestNextLink(t *testing.T) {
	h := `<https://api.github.com/repositories/515435940/issues?per_page=3&page=1>; rel="prev", <https://api.github.com/repositories/515435940/issues?per_page=3&page=3>; rel="next", <https://api.github.com/repositories/515435940/issues?per_page=3&page=5>; rel="last"`
	if got := nextLink(h); got != "https://api.github.com/repositories/515435940/issues?per_page=3&page=3" {
		t.Errorf("nextLink = %q", got)
	}
	if got := nextLink(`<https://api.github.com/x?page=1>; rel="first"`); got != "" {
		t.Errorf("nextLink without next = %q", got)
	}
}
