package auth

import "fmt"

// Role is what a principal may do. Each role may do what the roles below
// it may.
type Role int

const (
	// None may do nothing but sign in.
	None Role = iota
	// Viewer reads: environments, logs, events, the audit trail.
	Viewer
	// Operator also acts on environments: redeploy, sync (and sleep,
	// wake, extend, reset-db).
	Operator
	// Admin may do everything, down and delete included.
	Admin
)

// ParseRole reads "none", "viewer", "operator" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "none", "":
		return None, nil
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	case "admin":
		return Admin, nil
	}
	return None, fmt.Errorf("unknown role %q; want viewer, operator or admin", s)
}

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return "none"
}

// Allows reports whether r may do what needs role need.
func (r Role) Allows(need Role) bool { return r >= need }

// MarshalText writes the role's name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role's name.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
