package env

import (
	"strings"
	"testing"
)

func TestBranchKey(t *testing.T) {
	tests := map[string]struct {
		branch string
		want   string // exact key, or a prefix when hashed is true
		hashed bool
	}{
		"plain":            {branch: "feature-x", want: "feature-x"},
		"digits":           {branch: "123", want: "123"},
		"slash":            {branch: "feature/login", want: "feature-login-", hashed: true},
		"upper":            {branch: "Fix-Bug", want: "fix-bug-", hashed: true},
		"shell":            {branch: "x;rm -rf /;$(reboot)`id`", want: "x-rm-rf-reboot-id-", hashed: true},
		"sql":              {branch: `a'; DROP SCHEMA public CASCADE; --`, want: "a-drop-schema-public-cascade-", hashed: true},
		"dollar quote":     {branch: "$$x$$", want: "x-", hashed: true},
		"unicode":          {branch: "größe-ändern", want: "gr-e-ndern-", hashed: true},
		"only symbols":     {branch: "///", want: "b-", hashed: true},
		"emoji":            {branch: "🚀", want: "b-", hashed: true},
		"production":       {branch: "production", want: "production-", hashed: true},
		"looks like pr":    {branch: "pr-12", want: "pr-12-", hashed: true},
		"looks hashed":     {branch: "x-0123abcd", want: "x-0123abcd-", hashed: true},
		"leading dash":     {branch: "-x", want: "x-", hashed: true},
		"option-like":      {branch: "--upload-pack=evil", want: "upload-pack-evil-", hashed: true},
		"long":             {branch: strings.Repeat("a", 250), want: strings.Repeat("a", 31) + "-", hashed: true},
		"exactly max":      {branch: strings.Repeat("b", MaxKeyLen), want: strings.Repeat("b", MaxKeyLen)},
		"one over max":     {branch: strings.Repeat("c", MaxKeyLen+1), want: strings.Repeat("c", 31) + "-", hashed: true},
		"dots":             {branch: "release/1.2.3", want: "release-1-2-3-", hashed: true},
		"trailing slashes": {branch: "a//", want: "a-", hashed: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := BranchKey(tt.branch)
			if err := CheckKey(got); err != nil {
				t.Fatalf("BranchKey(%q) = %q: %v", tt.branch, got, err)
			}
			if !tt.hashed {
				if got != tt.want {
					t.Fatalf("BranchKey(%q) = %q, want %q", tt.branch, got, tt.want)
				}
				return
			}
			if !strings.HasPrefix(got, tt.want) || len(got) != len(tt.want)+hashLen {
				t.Fatalf("BranchKey(%q) = %q, want %q followed by %d hex digits", tt.branch, got, tt.want, hashLen)
			}
			if BranchKey(tt.branch) != got {
				t.Fatalf("BranchKey(%q) is not stable", tt.branch)
			}
		})
	}
}

func TestBranchKeyDistinct(t *testing.T) {
	// Names that slug alike must still get different keys.
	names := []string{"feature/x", "feature-x", "Feature-X", "feature_x", "feature.x", "FEATURE/X", "feature--x"}
	seen := map[string]string{}
	for _, n := range names {
		k := BranchKey(n)
		if prev, ok := seen[k]; ok {
			t.Fatalf("%q and %q share key %q", prev, n, k)
		}
		seen[k] = n
	}
}

func TestCheckKey(t *testing.T) {
	tests := map[string]bool{
		"pr-1": true, "production": true, "a": true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, "a.b": false,
		"x'; drop": false, strings.Repeat("a", MaxKeyLen+1): false,
	}
	for k, ok := range tests {
		if got := CheckKey(k) == nil; got != ok {
			t.Errorf("CheckKey(%q) ok=%v, want %v", k, got, ok)
		}
	}
}

// FuzzBranchKey checks that every branch name yields a valid DNS label, that
// the mapping is stable, and that two different names share a key only when
// both were hashed and their hashes collide.
func FuzzBranchKey(f *testing.F) {
	for _, s := range []string{"main", "feature/x", "x;rm -rf /", "größe", "pr-1", "production", strings.Repeat("z", 300), "a-0123abcd", ""} {
		f.Add(s, s+"/2")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, kb := BranchKey(a), BranchKey(b)
		for _, k := range []string{ka, kb} {
			if err := CheckKey(k); err != nil {
				t.Fatalf("invalid key: %v", err)
			}
			if k == ProductionKey || prKeyRE.MatchString(k) {
				t.Fatalf("branch key %q collides with a reserved key", k)
			}
		}
		if ka != BranchKey(a) {
			t.Fatalf("unstable key for %q", a)
		}
		if a != b && ka == kb {
			t.Fatalf("%q and %q share key %q", a, b, ka)
		}
	})
}
