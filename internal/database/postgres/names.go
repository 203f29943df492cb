package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/previewd/previewd/internal/env"
)

// Prefix starts the name of every role, schema and database previewd
// makes. Collect only ever looks at names with this prefix.
const Prefix = "preview_"

// MaxNameLen is PostgreSQL's identifier limit (NAMEDATALEN-1) in bytes.
const MaxNameLen = 63

// markerPrefix starts the comment previewd puts on every role, schema and
// database it makes; the environment's key follows. Collect needs both the
// name prefix and this marker before it drops anything.
const markerPrefix = "previewd:env="

// Name returns the role, schema and database name of the environment key:
// Prefix followed by the key with '-' replaced by '_' (keys never contain
// '_', so the mapping is one-to-one and KeyOf reverses it). It refuses keys
// that are not valid keys, and production's key, which owns no preview
// objects.
func Name(key string) (string, error) {
	if err := env.CheckKey(key); err != nil {
		return "", fmt.Errorf("postgres: refusing environment key: %w", err)
	}
	if key == env.ProductionKey {
		return "", fmt.Errorf("postgres: the production environment has no preview database")
	}
	name := Prefix + strings.ReplaceAll(key, "-", "_")
	if len(name) > MaxNameLen {
		// Unreachable while env.MaxKeyLen+len(Prefix) <= 63; kept so a
		// change there cannot yield names PostgreSQL would truncate.
		return "", fmt.Errorf("postgres: name for key %q is %d bytes; at most %d", key, len(name), MaxNameLen)
	}
	return name, nil
}

// KeyOf returns the key whose Name is name, or false if name is not a name
// previewd makes.
func KeyOf(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok || strings.Contains(rest, "-") {
		return "", false
	}
	key := strings.ReplaceAll(rest, "_", "-")
	if n, err := Name(key); err != nil || n != name {
		return "", false
	}
	return key, true
}

// marker returns the comment that marks key's objects.
func marker(key string) string { return markerPrefix + key }

// markedKey returns the key in comment if it is a marker and matches name.
func markedKey(comment, name string) (string, bool) {
	key, ok := strings.CutPrefix(comment, markerPrefix)
	if !ok {
		return "", false
	}
	if n, err := Name(key); err != nil || n != name {
		return "", false
	}
	return key, true
}

// password derives a role's password: base64url(HMAC-SHA256(secret, role)).
// Deriving it, rather than drawing a random one, makes Ensure idempotent:
// a second Ensure (from serve or from a CI job's `previewd db create`)
// returns the same working URL without reading the password back.
func password(secret []byte, role string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("previewd role password\x00" + role))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for
// password (RFC 5802/7677, PostgreSQL's rolpassword format), with a salt
// also derived from the secret. Giving the server the verifier rather than
// the password keeps the password out of the server's statement logs and
// pg_stat_activity, and makes the stored secret identical on every Ensure,
// so re-applying it never invalidates what PgBouncer cached for the role.
func scramVerifier(secret []byte, role, pw string) (string, error) {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("previewd scram salt\x00" + role))
	salt := m.Sum(nil)[:16]
	salted, err := pbkdf2.Key(sha256.New, pw, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	storedKey := sha256.Sum256(mac(salted, "Client Key"))
	serverKey := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$" + strconv.Itoa(scramIterations) + ":" + b64(salt) + "$" + b64(storedKey[:]) + ":" + b64(serverKey), nil
}

// checkLiteral refuses a string previewd is about to send as a SQL literal
// (a marker comment or a SCRAM verifier) unless every byte is in the small
// set such values are made of. The value is then still quoted by pgx's own
// literal sanitizer (simple protocol arguments); this check makes sure no
// quote, backslash or dollar-quote tag could reach it even if the quoting
// changed.
func checkLiteral(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("+/=:-_$", c) >= 0:
			if c == '$' && i+1 < len(s) && s[i+1] == '$' {
				return fmt.Errorf("postgres: refusing literal with $$")
			}
		default:
			return fmt.Errorf("postgres: refusing literal with byte %q", c)
		}
	}
	return nil
}
