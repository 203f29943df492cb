package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors of a signed value that cannot be trusted. Each answers 401.
var (
	ErrMalformed = errors.New("malformed signed value")
	ErrSignature = errors.New("bad signature")
	ErrExpired   = errors.New("expired")
)

// maxSigned bounds the length of a signed value read back, before any
// decoding (cookies are at most 4 KiB anyway).
const maxSigned = 4096

// DeriveKey derives the key for one purpose ("session", "preview", ...)
// from a secret, so one configured secret serves several signers whose
// values cannot be swapped for one another.
func DeriveKey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("previewd/" + purpose + "/v1"))
	return m.Sum(nil)
}

// Signer signs small JSON values with HMAC-SHA256 and an expiry:
// base64url(payload) "." base64url(mac). It is what sessions are made of,
// and what a later OAuth state or preview cookie can be made of.
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner returns a signer with the key derived from secret for
// purpose. now is the clock (nil: time.Now).
func NewSigner(secret []byte, purpose string, now func() time.Time) *Signer {
	if now == nil {
		now = time.Now
	}
	return &Signer{key: DeriveKey(secret, purpose), now: now}
}

type envelope struct {
	Exp int64           `json:"exp"`
	V   json.RawMessage `json:"v"`
}

// Sign returns v signed, valid for ttl.
func (s *Signer) Sign(v any, ttl time.Duration) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding signed value: %w", err)
	}
	p, err := json.Marshal(envelope{Exp: s.now().Add(ttl).Unix(), V: b})
	if err != nil {
		return "", fmt.Errorf("encoding signed value: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(p)
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload)), nil
}

// Verify checks value's signature and expiry and decodes it into v.
func (s *Signer) Verify(value string, v any) error {
	if len(value) > maxSigned {
		return ErrMalformed
	}
	payload, sig, ok := strings.Cut(value, ".")
	if !ok || payload == "" || sig == "" {
		return ErrMalformed
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return ErrMalformed
	}
	if !hmac.Equal(got, s.mac(payload)) {
		return ErrSignature
	}
	p, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ErrMalformed
	}
	var e envelope
	if err := json.Unmarshal(p, &e); err != nil {
		return ErrMalformed
	}
	if !s.now().Before(time.Unix(e.Exp, 0)) {
		return ErrExpired
	}
	if err := json.Unmarshal(e.V, v); err != nil {
		return ErrMalformed
	}
	return nil
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}
