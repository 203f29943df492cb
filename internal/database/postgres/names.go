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
// database it makes; the environment's key follows, then
// "/instance=<instance>" (the previewd deployment that made it) and, for
// what `previewd db create` made, "/owner=cli". Collect needs the name
// prefix and a marker of its own instance before it drops anything.
const markerPrefix = "previewd:env="

// OwnerCLI marks what `previewd db create` makes: it belongs to the CLI
// until `previewd db drop`, and serve never collects or drops it.
const OwnerCLI = "cli"

// mark is a parsed marker comment.
type mark struct {
	key      string
	instance string // "" in the markers of a previewd before instances
	owner    string // "" (serve) or OwnerCLI
}

// String returns the marker comment.
func (m mark) String() string {
	s := markerPrefix + m.key
	if m.instance != "" {
		s += "/instance=" + m.instance
	}
	if m.owner != "" {
		s += "/owner=" + m.owner
	}
	return s
}

// parseMark parses a marker comment on the object called name (an
// environment's object, or one of its auxiliary objects).
func parseMark(comment, name string) (mark, bool) {
	rest, ok := strings.CutPrefix(comment, markerPrefix)
	if !ok {
		return mark{}, false
	}
	if _, base, ok := ownerKey(name); ok {
		name = base
	}
	parts := strings.Split(rest, "/")
	m := mark{key: parts[0]}
	if n, err := Name(m.key); err != nil || n != name {
		return mark{}, false
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch {
		case k == "instance" && m.instance == "" && v != "":
			m.instance = v
		case k == "owner" && m.owner == "" && v == OwnerCLI:
			m.owner = v
		default:
			return mark{}, false
		}
	}
	return m, true
}

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

// Purposes of the auxiliary objects previewd makes for an environment
// besides its own role and schema or database. An auxiliary object is
// named Name(key) + "$" + purpose: '$' never appears in a Name, so such a
// name is never another environment's, and KeyOf refuses it.
const (
	// AuxRehearsal is the migration rehearsal's database.
	AuxRehearsal = "rehearsal"
	// AuxNext is, during a reset, the schema or database (and in schema
	// mode the role) being built to replace the environment's.
	AuxNext = "next"
	// AuxOld is, during a reset, the environment's previous schema or
	// database, renamed aside before it is dropped.
	AuxOld = "old"
)

// AuxName returns the name of key's auxiliary object for purpose (one of
// the Aux constants).
func AuxName(key, purpose string) (string, error) {
	switch purpose {
	case AuxRehearsal, AuxNext, AuxOld:
	default:
		return "", fmt.Errorf("postgres: unknown auxiliary object %q", purpose)
	}
	name, err := Name(key)
	if err != nil {
		return "", err
	}
	return name + "$" + purpose, nil
}

// AuxOf returns the key and purpose of an auxiliary object's name, or
// false if name is not one.
func AuxOf(name string) (key, purpose string, ok bool) {
	base, purpose, found := strings.Cut(name, "$")
	if !found {
		return "", "", false
	}
	key, ok = KeyOf(base)
	if !ok {
		return "", "", false
	}
	if n, err := AuxName(key, purpose); err != nil || n != name {
		return "", "", false
	}
	return key, purpose, true
}

// ownerKey returns the key of an environment's object or auxiliary
// object, and the environment's own name (its role's).
func ownerKey(name string) (key, base string, ok bool) {
	if key, ok := KeyOf(name); ok {
		return key, name, true
	}
	if key, _, ok := AuxOf(name); ok {
		base, _ := Name(key)
		return key, base, true
	}
	return "", "", false
}

// marker returns the comment to put on key's object whose comment is now
// existing ("" for a new one): this provider's instance and owner, except
// that what the CLI owns stays the CLI's (serve only uses it).
func (p *Provider) marker(key, existing string) string {
	m := mark{key: key, instance: p.instance, owner: p.owner}
	name, _ := Name(key)
	if old, ok := parseMark(existing, name); ok && old.owner == OwnerCLI {
		m.owner = OwnerCLI
	}
	return m.String()
}

// ours reports whether comment marks an object as key's, made by this
// instance or by a previewd before instances (which this one adopts).
func (p *Provider) ours(key, comment string) bool {
	name, err := Name(key)
	if err != nil {
		return false
	}
	m, ok := parseMark(comment, name)
	return ok && m.key == key && (m.instance == "" || m.instance == p.instance)
}

// cliOwned reports whether comment marks an object `previewd db create`
// made, which serve (a provider without OwnerCLI) leaves alone.
func (p *Provider) cliOwned(key, comment string) bool {
	name, err := Name(key)
	if err != nil {
		return false
	}
	m, ok := parseMark(comment, name)
	return ok && m.owner == OwnerCLI && p.owner != OwnerCLI
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
