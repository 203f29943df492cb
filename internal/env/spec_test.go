package env

import "testing"

func TestMatchPath(t *testing.T) {
	tests := map[string]struct {
		glob, name string
		want       bool
	}{
		"double star under dir":     {"apps/web/**", "apps/web/x.go", true},
		"double star deep":          {"apps/web/**", "apps/web/a/b/c.ts", true},
		"double star not sibling":   {"apps/web/**", "apps/webx/x.go", false},
		"double star not parent":    {"apps/web/**", "apps/x.go", false},
		"double star dir itself":    {"apps/web/**", "apps/web", true},
		"leading double star":       {"**/*.go", "a/b/c.go", true},
		"leading double star root":  {"**/*.go", "c.go", true},
		"leading double star other": {"**/*.go", "a/b/c.ts", false},
		"middle double star":        {"apps/**/test/*.go", "apps/web/test/x.go", true},
		"middle double star none":   {"apps/**/test/*.go", "apps/test/x.go", true},
		"middle double star miss":   {"apps/**/test/*.go", "apps/web/x.go", false},
		"star one segment":          {"apps/*/x.go", "apps/web/x.go", true},
		"star not across":           {"apps/*", "apps/web/x.go", false},
		"exact file":                {"go.mod", "go.mod", true},
		"exact file nested no":      {"go.mod", "sub/go.mod", false},
		"trailing slash":            {"docs/", "docs/a/b.md", true},
		"leading slash":             {"/docs/**", "docs/a.md", true},
		"class":                     {"[ab]pps/**", "apps/x", true},
		"malformed":                 {"apps/[", "apps/[", false},
		"all":                       {"**", "anything/at/all", true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := MatchPath(tt.glob, tt.name); got != tt.want {
				t.Errorf("MatchPath(%q, %q) = %v, want %v", tt.glob, tt.name, got, tt.want)
			}
		})
	}
}

func TestTouches(t *testing.T) {
	s := AppSpec{Paths: []string{"apps/web/**", "packages/ui/**"}}
	tests := map[string]struct {
		spec  AppSpec
		files []string
		want  bool
	}{
		"docs only":      {s, []string{"docs/a.md", "README.md"}, false},
		"one under web":  {s, []string{"docs/a.md", "apps/web/x.go"}, true},
		"under ui":       {s, []string{"packages/ui/button.tsx"}, true},
		"empty diff":     {s, []string{}, false},
		"no filters":     {AppSpec{}, []string{"docs/a.md"}, true},
		"no filters nil": {AppSpec{}, nil, true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tt.spec.Touches(tt.files); got != tt.want {
				t.Errorf("Touches(%q) = %v, want %v", tt.files, got, tt.want)
			}
		})
	}
}

func TestCheckPathGlob(t *testing.T) {
	tests := map[string]bool{
		"apps/web/**": true,
		"**/*.go":     true,
		"docs/":       true,
		"":            false,
		"apps/[":      false,
		"apps/x**":    false,
		"../secret":   false,
	}
	for glob, ok := range tests {
		if err := CheckPathGlob(glob); (err == nil) != ok {
			t.Errorf("CheckPathGlob(%q) = %v, want ok %v", glob, err, ok)
		}
	}
}

func FuzzMatchPath(f *testing.F) {
	f.Add("apps/**/x/*.go", "apps/a/b/x/y.go")
	f.Fuzz(func(t *testing.T, glob, name string) {
		if len(glob) > 64 || len(name) > 256 {
			return
		}
		MatchPath(glob, name) // must not panic or hang
	})
}
