package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"
)

// CookieName is the dashboard's session cookie.
const CookieName = "previewd_session"

// DefaultSessionTTL is how long a session lasts without sessionTTL.
const DefaultSessionTTL = 12 * time.Hour

// ErrNoSession is returned by Sessions.Read when the request has no
// session cookie.
var ErrNoSession = errors.New("no session")

// Session is what the session cookie holds.
type Session struct {
	// Principal signed in; its role is rechecked against the config on
	// every request for tokens (see Authenticator).
	Name string `json:"n"`
	Kind string `json:"k"`
	Role Role   `json:"r"`
	// Issued is when the session began, Unix seconds.
	Issued int64 `json:"i"`
	// Expires is when the session ends, Unix seconds.
	Expires int64 `json:"x"`
	// ID tells two sessions of one principal apart; signing out revokes
	// it (see Revocations).
	ID string `json:"id"`
}

// Principal is the session's principal.
func (s Session) Principal() Principal {
	return Principal{Name: s.Name, Kind: s.Kind, Role: s.Role, Session: true, SessionID: s.ID, SessionExpires: time.Unix(s.Expires, 0)}
}

// Sessions issues and reads signed session cookies: HttpOnly,
// SameSite=Lax, Path=/, Secure when the request came over TLS (or through
// a proxy that says so with X-Forwarded-Proto: https), with an expiry
// both in the cookie and in the signed value.
type Sessions struct {
	signer *Signer
	ttl    time.Duration
	now    func() time.Time
}

// NewSessions returns sessions signed with a key derived from secret,
// lasting ttl (0: DefaultSessionTTL). now is the clock (nil: time.Now).
func NewSessions(secret []byte, ttl time.Duration, now func() time.Time) *Sessions {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Sessions{signer: NewSigner(secret, "session", now), ttl: ttl, now: now}
}

// Issue sets a new session cookie for p on w and returns the session.
func (s *Sessions) Issue(w http.ResponseWriter, r *http.Request, p Principal) (Session, error) {
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return Session{}, err
	}
	sess := Session{Name: p.Name, Kind: p.Kind, Role: p.Role, Issued: s.now().Unix(), Expires: s.now().Add(s.ttl).Unix(), ID: hex.EncodeToString(id)}
	v, err := s.signer.Sign(sess, s.ttl)
	if err != nil {
		return Session{}, err
	}
	http.SetCookie(w, s.cookie(r, v, s.now().Add(s.ttl)))
	return sess, nil
}

// Read returns the request's session: ErrNoSession without a cookie,
// ErrMalformed, ErrSignature or ErrExpired for one that cannot be
// trusted.
func (s *Sessions) Read(r *http.Request) (Session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return Session{}, ErrNoSession
	}
	var sess Session
	if err := s.signer.Verify(c.Value, &sess); err != nil {
		return Session{}, err
	}
	if sess.Name == "" || sess.Kind == "" || sess.Kind == KindAnonymous || sess.ID == "" {
		return Session{}, ErrMalformed
	}
	return sess, nil
}

// Clear removes the session cookie.
func (s *Sessions) Clear(w http.ResponseWriter, r *http.Request) {
	c := s.cookie(r, "", time.Unix(0, 0))
	c.MaxAge = -1
	http.SetCookie(w, c)
}

func (s *Sessions) cookie(r *http.Request, v string, exp time.Time) *http.Cookie {
	return &http.Cookie{
		Name:     CookieName,
		Value:    v,
		Path:     "/",
		Expires:  exp,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   OverTLS(r),
	}
}

// OverTLS reports whether the client reached previewd over TLS.
// X-Forwarded-Proto is believed: a client that lies gets a Secure cookie
// over plain HTTP, which only its own browser then withholds.
func OverTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
