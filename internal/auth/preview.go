package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// PreviewAccess says who may reach a protected preview.
type PreviewAccess string

// The preview access modes.
const (
	// PreviewPublic: anyone who can reach the preview's URL.
	PreviewPublic PreviewAccess = "public"
	// PreviewPassword: HTTP Basic with the password (any user name), or
	// the password page, which sets a preview cookie.
	PreviewPassword PreviewAccess = "password"
	// PreviewSignIn: previewd's own sign-in, as a viewer or better.
	PreviewSignIn PreviewAccess = "signin"
)

// Names on the wire of protected previews.
const (
	// PreviewCookieName is the preview host's cookie; the app never sees
	// it (see Previews.Strip).
	PreviewCookieName = "previewd_preview"
	// BypassHeader carries previews.bypassToken, for CI, e2e tests and
	// agents.
	BypassHeader = "X-Previewd-Bypass"
	// PreviewCookieTTL is how long a preview cookie lasts.
	PreviewCookieTTL = 12 * time.Hour
	// TicketTTL is how long a sign-in ticket may wait to be exchanged.
	TicketTTL = time.Minute
)

// Errors of a preview credential. Each answers 401.
var (
	ErrWrongPreview = errors.New("credential of another preview")
	ErrTicketUsed   = errors.New("ticket already used")
	ErrTooWeak      = errors.New("role too weak")
)

// PreviewOptions configure Previews.
type PreviewOptions struct {
	Access PreviewAccess
	// Password is the shared password of access password.
	Password string
	// BypassToken, if set, lets a request with BypassHeader through.
	BypassToken string
	// ProtectProduction puts the production environment behind the same
	// access as previews; by default it is public.
	ProtectProduction bool
	// Secret is the key the "preview" purpose key is derived from.
	Secret []byte
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Previews guards preview hosts: it checks a request's preview
// credentials (bypass header, HTTP Basic password, preview cookie),
// issues the preview cookie, bound to one preview's key and scoped to its
// host, and strips all of them before the request goes on to the app.
type Previews struct {
	o      PreviewOptions
	signer *Signer
	now    func() time.Time
	// gen names the password a cookie was issued under, so a new
	// password ends the cookies of the old one.
	gen string

	mu   sync.Mutex
	used map[string]time.Time // ticket ids exchanged, until they expire
}

// NewPreviews returns the guard of preview hosts.
func NewPreviews(o PreviewOptions) *Previews {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Access == "" {
		o.Access = PreviewPublic
	}
	m := hmac.New(sha256.New, DeriveKey(o.Secret, "preview"))
	m.Write([]byte("password\x00" + o.Password))
	gen := hex.EncodeToString(m.Sum(nil)[:8])
	return &Previews{o: o, signer: NewSigner(o.Secret, "preview", o.Now), now: o.Now, gen: gen, used: map[string]time.Time{}}
}

// Access is the configured access mode.
func (p *Previews) Access() PreviewAccess { return p.o.Access }

// Protects reports whether the environment key (production or not)
// needs preview credentials.
func (p *Previews) Protects(production bool) bool {
	if p == nil || p.o.Access == PreviewPublic {
		return false
	}
	return !production || p.o.ProtectProduction
}

// previewValue is what the preview cookie and a ticket hold.
type previewValue struct {
	// Key is the preview the value is good for, and no other.
	Key string `json:"k"`
	// Who signed in (access signin), for the logs.
	Name string `json:"n,omitempty"`
	// Ticket marks a one-time ticket, with its id.
	Ticket string `json:"t,omitempty"`
	// Gen is the password generation of a cookie (see Previews.gen).
	Gen string `json:"g,omitempty"`
}

// Allow reports whether r carries a credential good for preview key: the
// bypass token, the password over HTTP Basic (access password), or a
// preview cookie of this key. A credential present but wrong is an error.
func (p *Previews) Allow(r *http.Request, key string) (bool, error) {
	if b := r.Header.Get(BypassHeader); b != "" {
		if p.o.BypassToken != "" && equal(b, p.o.BypassToken) {
			return true, nil
		}
		return false, ErrUnknownToken
	}
	if p.o.Access == PreviewPassword {
		if _, pw, ok := r.BasicAuth(); ok {
			if p.CheckPassword(pw) {
				return true, nil
			}
			return false, ErrUnknownToken
		}
	}
	c, err := r.Cookie(PreviewCookieName)
	if err != nil || c.Value == "" {
		return false, nil
	}
	var v previewValue
	if err := p.signer.Verify(c.Value, &v); err != nil {
		return false, err
	}
	if v.Ticket != "" {
		return false, ErrMalformed
	}
	if v.Key != key {
		return false, ErrWrongPreview
	}
	if v.Gen != p.gen {
		return false, ErrExpired
	}
	return true, nil
}

// CheckPassword compares s with the password in constant time.
func (p *Previews) CheckPassword(s string) bool {
	return p.o.Password != "" && equal(s, p.o.Password)
}

// equal compares two secrets in constant time: their SHA-256 sums, so
// not even the length shows.
func equal(a, b string) bool {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

// Issue sets the preview cookie for key on w: no Domain (so only the
// preview's own host gets it back), HttpOnly, SameSite=Lax, Secure over
// TLS.
func (p *Previews) Issue(w http.ResponseWriter, r *http.Request, key, name string) error {
	v, err := p.signer.Sign(previewValue{Key: key, Name: name, Gen: p.gen}, PreviewCookieTTL)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name:     PreviewCookieName,
		Value:    v,
		Path:     "/",
		Expires:  p.now().Add(PreviewCookieTTL),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   OverTLS(r),
	})
	return nil
}

// FormToken is the token of the password page's form for key: a signed
// value the cross-site attacker cannot read, on top of the same-origin
// check.
func (p *Previews) FormToken(key string) (string, error) {
	return p.signer.Sign(previewValue{Key: key, Ticket: "form"}, time.Hour)
}

// CheckFormToken reports whether t is a form token of key.
func (p *Previews) CheckFormToken(t, key string) bool {
	var v previewValue
	return p.signer.Verify(t, &v) == nil && v.Key == key && v.Ticket == "form"
}

// Ticket returns a one-time ticket for key, signed for principal pr: what
// the dashboard host hands the preview host after a sign-in, since
// cookies do not cross hosts. Only a viewer or better gets one.
func (p *Previews) Ticket(key string, pr Principal) (string, error) {
	if !pr.Role.Allows(Viewer) || pr.Anonymous() {
		return "", ErrTooWeak
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	return p.signer.Sign(previewValue{Key: key, Name: pr.Name, Ticket: hex.EncodeToString(id)}, TicketTTL)
}

// Redeem checks a ticket for key, once, and returns who it was signed
// for.
func (p *Previews) Redeem(t, key string) (string, error) {
	var v previewValue
	if err := p.signer.Verify(t, &v); err != nil {
		return "", err
	}
	if v.Ticket == "" || v.Ticket == "form" {
		return "", ErrMalformed
	}
	if v.Key != key {
		return "", ErrWrongPreview
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, until := range p.used {
		if !now.Before(until) {
			delete(p.used, id)
		}
	}
	if _, seen := p.used[v.Ticket]; seen {
		return "", ErrTicketUsed
	}
	p.used[v.Ticket] = now.Add(TicketTTL + time.Second)
	return v.Name, nil
}

// Strip removes previewd's credentials from r before it goes on to the
// app: the preview cookie, a Basic Authorization header (access password)
// and the bypass header. The app's own cookies and headers stay.
func (p *Previews) Strip(r *http.Request) {
	r.Header.Del(BypassHeader)
	if p.o.Access == PreviewPassword {
		if a := r.Header.Get("Authorization"); len(a) >= 6 && strings.EqualFold(a[:6], "basic ") {
			r.Header.Del("Authorization")
		}
	}
	lines := r.Header.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	found := false
	for _, l := range lines {
		if strings.Contains(l, PreviewCookieName) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, l := range lines {
		for part := range strings.SplitSeq(l, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name == PreviewCookieName || strings.TrimSpace(part) == "" {
				continue
			}
			kept = append(kept, strings.TrimSpace(part))
		}
	}
	if len(kept) == 0 {
		r.Header.Del("Cookie")
		return
	}
	r.Header.Set("Cookie", strings.Join(kept, "; "))
}
