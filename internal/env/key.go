package env

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MaxKeyLen is the longest key previewd makes. It is below the 63 bytes of a
// DNS label so that prefixed names derived from a key (preview-<key>,
// preview_<key>) stay within the 63-byte limits of DNS, Kubernetes and
// PostgreSQL identifiers.
const MaxKeyLen = 40

// hashLen is the number of hex digits of the branch name's SHA-256 that a
// key carries when the branch name could not be used as it is.
const hashLen = 8

var (
	keyRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	prKeyRE  = regexp.MustCompile(`^pr-[0-9]+$`)
	hashedRE = regexp.MustCompile(`-[0-9a-f]{8}$`)
)

// ValidKey reports whether k is a well-formed key: a DNS label of at most
// MaxKeyLen bytes.
func ValidKey(k string) bool {
	return len(k) <= MaxKeyLen && keyRE.MatchString(k)
}

// CheckKey returns an error naming the rule a key breaks, or nil.
func CheckKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("key is empty")
	case len(k) > MaxKeyLen:
		return fmt.Errorf("key %q is %d bytes; at most %d", k, len(k), MaxKeyLen)
	case !keyRE.MatchString(k):
		return fmt.Errorf("key %q is not a DNS label: want lower-case letters, digits and '-', starting and ending with a letter or digit", k)
	}
	return nil
}

// PullRequestKey returns the key of pull request n.
func PullRequestKey(n int) string { return "pr-" + strconv.Itoa(n) }

// BranchKey derives the key of a branch environment from the branch name.
//
// A branch name that already is a valid key, is not "production", does not
// look like a pull request key (pr-N) and does not end like a hashed key
// (-xxxxxxxx) is its own key. Any other name is slugged (lower-cased, runs
// of other characters become '-', trimmed and shortened) and gets '-' and
// the first 8 hex digits of the SHA-256 of the full name appended. So keys
// are stable (a pure function of the name), always valid DNS labels, and
// two different branches share a key only if their hashes collide.
func BranchKey(branch string) string {
	if ValidKey(branch) && branch != ProductionKey && !prKeyRE.MatchString(branch) && !hashedRE.MatchString(branch) {
		return branch
	}
	sum := sha256.Sum256([]byte(branch))
	h := hex.EncodeToString(sum[:])[:hashLen]
	slug := Slug(branch, MaxKeyLen-hashLen-1)
	if slug == "" {
		return "b-" + h
	}
	return slug + "-" + h
}

// Slug lower-cases s, turns every run of characters other than a-z and 0-9
// into one '-', trims '-' from both ends and cuts the result to at most max
// bytes (trimming again). It may return "".
func Slug(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := b.String()
	if len(out) > max {
		out = out[:max]
	}
	return strings.Trim(out, "-")
}
