package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// instanceRE is a DNS label (RFC 1123): it fits a Kubernetes label value
// and previewd's PostgreSQL markers.
var instanceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// CheckInstance returns an error unless s is a valid instance: a DNS label
// of at most 63 characters.
func CheckInstance(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("required")
	case len(s) > 63:
		return fmt.Errorf("%q is %d characters; want at most 63", s, len(s))
	case !instanceRE.MatchString(s):
		return fmt.Errorf("%q is not a DNS label (lower-case letters, digits and '-', starting and ending with a letter or digit)", s)
	}
	return nil
}

// DefaultInstance is the instance of a deployment that sets none: the
// first 12 hex digits of a SHA-256 of the forge's repository (github
// owner/repo, case-folded as GitHub does; or the git URL). Every replica
// configured with the same repository gets the same one; another project
// gets another.
func DefaultInstance(f Forge) string {
	id := "git:" + f.Git.URL
	if f.Kind == "github" {
		id = "github:" + strings.ToLower(f.GitHub.Owner+"/"+f.GitHub.Repo)
	}
	s := sha256.Sum256([]byte(id))
	return hex.EncodeToString(s[:6])
}
