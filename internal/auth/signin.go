package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Errors of a sign-in callback. ErrState and ErrCallback answer 401,
// ErrNotAllowed 403; none of them issues a session.
var (
	// ErrState: the callback's state is missing, does not match the
	// signed state cookie, or was used before.
	ErrState = errors.New("sign-in state mismatch")
	// ErrCallback: the provider answered with an error, the code could
	// not be exchanged, or the identity it vouched for cannot be trusted.
	ErrCallback = errors.New("sign-in callback refused")
	// ErrNotAllowed: a real identity that the config does not let in.
	ErrNotAllowed = errors.New("not allowed to sign in")
)

// Kinds of principal signed in through a provider.
const (
	KindOIDC   = "oidc"
	KindGitHub = "github"
)

// Provider is a sign-in flow through an identity provider: Begin sends
// the browser there, Finish reads its answer on the callback.
type Provider interface {
	// Name is the flow's path segment: /signin/<name>.
	Name() string
	// Label is the sign-in button's text.
	Label() string
	// Begin redirects the browser to the provider, keeping state, nonce
	// and PKCE verifier in a signed, short-lived cookie; next is where
	// the sign-in goes back to (already checked to be on this host).
	Begin(w http.ResponseWriter, r *http.Request, next string) error
	// Finish checks the callback against that cookie, exchanges the code
	// and returns the principal and the next path. It clears the cookie
	// either way.
	Finish(w http.ResponseWriter, r *http.Request) (Principal, string, error)
}

// stateTTL is how long a browser may spend at the provider.
const stateTTL = 10 * time.Minute

// pending is what the state cookie holds between Begin and Finish.
type pending struct {
	State    string `json:"s"`
	Nonce    string `json:"n,omitempty"`
	Verifier string `json:"v"`
	Next     string `json:"x"`
}

// flow is the state handling that every provider shares.
type flow struct {
	name   string
	signer *Signer
	now    func() time.Time

	mu   sync.Mutex
	used map[string]time.Time // states already redeemed, until they expire
}

func newFlow(name string, secret []byte, now func() time.Time) *flow {
	if now == nil {
		now = time.Now
	}
	return &flow{name: name, signer: NewSigner(secret, "signin-"+name, now), now: now, used: map[string]time.Time{}}
}

func (f *flow) cookieName() string { return "previewd_signin_" + f.name }

func (f *flow) cookie(r *http.Request, v string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     f.cookieName(),
		Value:    v,
		Path:     "/signin/" + f.name,
		MaxAge:   maxAge,
		HttpOnly: true,
		// Lax: the provider's redirect back is a top-level GET.
		SameSite: http.SameSiteLaxMode,
		Secure:   OverTLS(r),
	}
}

// begin makes a new pending sign-in, sets its cookie and redirects to the
// URL authURL builds from it.
func (f *flow) begin(w http.ResponseWriter, r *http.Request, next string, nonce bool, authURL func(p pending) string) error {
	p := pending{State: randomString(), Verifier: oauth2.GenerateVerifier(), Next: next}
	if nonce {
		p.Nonce = randomString()
	}
	v, err := f.signer.Sign(p, stateTTL)
	if err != nil {
		return err
	}
	http.SetCookie(w, f.cookie(r, v, int(stateTTL/time.Second)))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, authURL(p), http.StatusFound)
	return nil
}

// finish checks the callback's state against the cookie, clears the
// cookie and redeems the state once: a replayed callback or cookie is
// ErrState. It returns the pending sign-in and the code.
func (f *flow) finish(w http.ResponseWriter, r *http.Request) (pending, string, error) {
	http.SetCookie(w, f.cookie(r, "", -1))
	c, err := r.Cookie(f.cookieName())
	if err != nil || c.Value == "" {
		return pending{}, "", errors.Join(ErrState, errors.New("no state cookie"))
	}
	var p pending
	if err := f.signer.Verify(c.Value, &p); err != nil {
		return pending{}, "", errors.Join(ErrState, err)
	}
	q := r.URL.Query()
	got := q.Get("state")
	if got == "" || p.State == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.State)) != 1 {
		return pending{}, "", errors.Join(ErrState, errors.New("state does not match"))
	}
	if !f.redeem(p.State) {
		return pending{}, "", errors.Join(ErrState, errors.New("state used before"))
	}
	if e := q.Get("error"); e != "" {
		return pending{}, "", errors.Join(ErrCallback, errors.New("provider answered "+clip(e)))
	}
	code := q.Get("code")
	if code == "" {
		return pending{}, "", errors.Join(ErrCallback, errors.New("no code"))
	}
	return p, code, nil
}

// redeem marks state used, false if it was already.
func (f *flow) redeem(state string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	for s, until := range f.used {
		if now.After(until) {
			delete(f.used, s)
		}
	}
	if _, ok := f.used[state]; ok {
		return false
	}
	f.used[state] = now.Add(stateTTL + time.Minute)
	return true
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b)
}

// clip bounds a provider's error code before it is said anywhere.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// httpContext returns ctx carrying client for oauth2 and go-oidc, when set.
func httpContext(ctx context.Context, client *http.Client) context.Context {
	if client == nil {
		return ctx
	}
	return context.WithValue(ctx, oauth2.HTTPClient, client)
}
