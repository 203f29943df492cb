package postgres

import (
	"regexp"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

var nameRE = regexp.MustCompile(`^preview_[a-z0-9_]+$`)

func TestName(t *testing.T) {
	good := map[string]string{
		"pr-1":                             "preview_pr_1",
		"feature-x":                        "preview_feature_x",
		"a":                                "preview_a",
		"public":                           "preview_public",
		strings.Repeat("z", env.MaxKeyLen): "preview_" + strings.Repeat("z", env.MaxKeyLen),
	}
	for key, want := range good {
		got, err := Name(key)
		if err != nil || got != want {
			t.Errorf("Name(%q) = %q, %v; want %q", key, got, err, want)
		}
		if k, ok := KeyOf(got); !ok || k != key {
			t.Errorf("KeyOf(%q) = %q, %v; want %q", got, k, ok, key)
		}
	}
	for _, key := range hostileKeys {
		if got, err := Name(key); err == nil {
			t.Errorf("Name(%q) = %q; want an error", key, got)
		}
	}
	for _, name := range []string{"public", "preview_", "preview_A", "preview_a-b", "preview__a", "preview_a_", "preview_production", "pg_preview_a", "xpreview_a", "preview_" + strings.Repeat("a", 41)} {
		if k, ok := KeyOf(name); ok {
			t.Errorf("KeyOf(%q) = %q; want not a preview name", name, k)
		}
	}
}

// hostileKeys are keys Ensure must refuse before running any SQL. (A key
// "public" is a valid key, e.g. of a branch named public: it is made safe,
// not refused, since its name is preview_public; see TestHostileKeys.)
var hostileKeys = []string{
	"",
	`a'; DROP SCHEMA public CASCADE; --`,
	`x"; DROP ROLE admin; --`,
	"$$",
	"a$$b",
	"$body$",
	"a;b",
	`a\b`,
	strings.Repeat("a", 300),
	strings.Repeat("a", env.MaxKeyLen+1),
	"pg_catalog",
	"information_schema",
	"production",
	"PR-1",
	"a_b",
	"-a",
	"a-",
	"a b",
	"a\x00b",
	"ä",
}

func TestCheckLiteral(t *testing.T) {
	for _, ok := range []string{mark{key: "pr-1", instance: "shop-1", owner: OwnerCLI}.String(), "SCRAM-SHA-256$4096:abc+/=$x:y"} {
		if err := checkLiteral(ok); err != nil {
			t.Errorf("checkLiteral(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"a'b", `a\b`, "a$$b", "a;b", "a b", "a\x00", "é", `"`} {
		if checkLiteral(bad) == nil {
			t.Errorf("checkLiteral(%q) accepted", bad)
		}
	}
}

func TestPasswordDerivation(t *testing.T) {
	a := password([]byte("s1"), "preview_a")
	if a != password([]byte("s1"), "preview_a") {
		t.Fatal("password is not deterministic")
	}
	if a == password([]byte("s2"), "preview_a") || a == password([]byte("s1"), "preview_b") {
		t.Fatal("password does not depend on secret and role")
	}
	if len(a) != 43 || strings.Trim(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Fatalf("password %q is not 43 base64url characters", a)
	}
	v1, err := scramVerifier([]byte("s1"), "preview_a", a)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := scramVerifier([]byte("s1"), "preview_a", a)
	if v1 != v2 || !strings.HasPrefix(v1, "SCRAM-SHA-256$4096:") || checkLiteral(v1) != nil {
		t.Fatalf("verifier %q / %q", v1, v2)
	}
}

// FuzzNames checks the name derivation: every key Name accepts is a valid
// key, and its name is prefixed, at most 63 bytes, made of [a-z0-9_],
// never reserved, and maps back to the key (so names are unique per key);
// every other key is refused.
func FuzzNames(f *testing.F) {
	for _, k := range append([]string{"pr-1", "main", "feature-x", "a", strings.Repeat("z", env.MaxKeyLen), "x-0123abcd"}, hostileKeys...) {
		f.Add(k, k+"-2")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		na, erra := Name(a)
		nb, errb := Name(b)
		for _, c := range []struct {
			key, name string
			err       error
		}{{a, na, erra}, {b, nb, errb}} {
			valid := env.CheckKey(c.key) == nil && c.key != env.ProductionKey
			if valid != (c.err == nil) {
				t.Fatalf("Name(%q): err=%v but key valid=%v", c.key, c.err, valid)
			}
			if c.err != nil {
				if c.name != "" {
					t.Fatalf("Name(%q) returned %q with an error", c.key, c.name)
				}
				continue
			}
			if len(c.name) > MaxNameLen || !nameRE.MatchString(c.name) || !strings.HasPrefix(c.name, Prefix) {
				t.Fatalf("Name(%q) = %q: not a valid preview name", c.key, c.name)
			}
			switch {
			case c.name == "public", c.name == "information_schema", strings.HasPrefix(c.name, "pg_"):
				t.Fatalf("Name(%q) = %q is reserved", c.key, c.name)
			}
			if k, ok := KeyOf(c.name); !ok || k != c.key {
				t.Fatalf("KeyOf(Name(%q)) = %q, %v", c.key, k, ok)
			}
			if _, ok := parseMark(mark{key: c.key, instance: "i1", owner: OwnerCLI}.String(), c.name); !ok {
				t.Fatalf("marker of %q does not match its name", c.key)
			}
		}
		if erra == nil && errb == nil && a != b && na == nb {
			t.Fatalf("keys %q and %q share name %q", a, b, na)
		}
		if erra == nil && env.CheckKey(b) == nil && a != b {
			if _, ok := parseMark(mark{key: b}.String(), na); ok {
				t.Fatalf("marker of %q matches name of %q", b, a)
			}
		}
	})
}
