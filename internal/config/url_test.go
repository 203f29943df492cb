package config

import "testing"

// TestURLTemplateFunctions: the top-level url template has the functions
// of every template (internal/tmpl): validation accepts {{.Key | upper}}
// and EnvURL renders it.
func TestURLTemplateFunctions(t *testing.T) {
	env := func(string) (string, bool) { return "", false }
	c, err := Parse([]byte("forge: {git: {url: x}}\nurl: 'https://{{.Key | upper | lower}}.{{.Domain}}'\ndomain: example.com"), t.TempDir(), env)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.EnvURL("PR-3"), "https://pr-3.example.com"; got != want {
		t.Errorf("EnvURL = %q; want %q", got, want)
	}
	if _, err := Parse([]byte("forge: {git: {url: x}}\nurl: 'https://{{.Key | nope}}'"), t.TempDir(), env); err == nil {
		t.Error("a url template calling an unknown function validated")
	}
}
