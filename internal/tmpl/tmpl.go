// Package tmpl holds the templates of the configuration: the data each
// kind of template sees, the functions every template may call, and the
// one way to parse, execute and check them. `previewd validate`
// (internal/config) and the runtimes that render them use this package
// alone, so a template passes validation exactly when it renders.
//
// There are two kinds of data: Data, what the Kubernetes templates see
// (namespace, image, url, the manifests and the migrate Job), and URLData,
// what the top-level url template sees.
package tmpl

import (
	"strconv"
	"strings"
	"text/template"
)

// Data is what every Kubernetes template sees: the environment and what
// previewd decided for it.
type Data struct {
	Key        string
	Kind       string
	Number     int
	Branch     string
	BranchSlug string
	SHA        string
	ShortSHA   string
	// Host is <key>.<domain>.
	Host       string
	URL        string
	Image      string
	Namespace  string
	SecretName string
	Production bool
}

// URLData is what the top-level url template sees.
type URLData struct {
	Key, Host, Domain string
	Port              int
}

// Sample returns Data standing for an environment, to check templates
// with.
func Sample() Data {
	return Data{
		Key: "pr-1", Kind: "pull_request", Number: 1, Branch: "feature/x", BranchSlug: "feature-x",
		SHA: "0123456789abcdef0123456789abcdef01234567", ShortSHA: "0123456",
		Host: "pr-1.example.com", URL: "https://pr-1.example.com", Image: "example.com/app:0123456",
		Namespace: "preview-pr-1", SecretName: "previewd-env",
	}
}

// SampleURL returns URLData standing for an environment, to check url
// templates with.
func SampleURL() URLData {
	return URLData{Key: "pr-1", Host: "pr-1.example.com", Domain: "example.com", Port: 8080}
}

// Funcs returns the functions every template may call.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"quote": strconv.Quote,
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
		"trunc": func(n int, s string) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"default": func(def, v any) any {
			if v == nil || v == "" || v == 0 || v == false {
				return def
			}
			return v
		},
	}
}

// Parse parses text as the template name, with Funcs. A key the data
// lacks is an error when the template runs. Errors name the template.
func Parse(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs(Funcs()).Parse(text)
}

// Execute runs t over d and returns the text.
func Execute(t *template.Template, d any) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Check parses text and runs it over sample (Sample() or SampleURL()), as
// validation does: it returns the error rendering would give.
func Check(name, text string, sample any) error {
	t, err := Parse(name, text)
	if err != nil {
		return err
	}
	if _, err := Execute(t, sample); err != nil {
		return err
	}
	return nil
}
