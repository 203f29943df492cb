package kube

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/tmpl"
)

// TestValidateAgreesWithRendering: `previewd validate` accepts a template
// exactly when the runtime renders it, for every template of the
// kubernetes runtime: both see the same functions and the same data
// fields. (They used to be declared twice, and {{.Key | lower}} rendered
// but failed validation.)
func TestValidateAgreesWithRendering(t *testing.T) {
	templates := map[string]string{
		"lower":         "preview-{{.Key | lower}}",
		"upper":         "{{.Key | upper}}",
		"trunc":         "{{.BranchSlug | trunc 20}}",
		"default":       `{{default "app" .Image}}`,
		"quote":         "{{.Key | quote}}",
		"unknown field": "{{.Nope}}",
		"unknown func":  "{{.Key | nope}}",
		"bad syntax":    "{{.Key",
		"bad call":      "{{trunc .Key}}",
	}
	var all []string
	for i := range reflect.TypeFor[tmpl.Data]().NumField() {
		all = append(all, "{{."+reflect.TypeFor[tmpl.Data]().Field(i).Name+"}}")
	}
	templates["every field"] = strings.Join(all, "-")
	for name := range tmpl.Funcs() {
		used := false
		for _, text := range templates {
			used = used || strings.Contains(text, name)
		}
		if !used {
			t.Errorf("no template of the table calls %s", name)
		}
	}
	dir := t.TempDir()
	for name, text := range templates {
		for _, field := range []string{"namespace", "image", "url", "migrate job"} {
			t.Run(name+"/"+field, func(t *testing.T) {
				validErr := validate(t, dir, field, text)
				renderErr := render(t, dir, field, text)
				if (validErr == nil) != (renderErr == nil) {
					t.Errorf("%s %q: validate says %v; rendering says %v", field, text, validErr, renderErr)
				}
			})
		}
	}
}

// validate runs the configuration's validation with the template in
// field.
func validate(t *testing.T, dir, field, text string) error {
	quoted := "'" + strings.ReplaceAll(text, "'", "''") + "'"
	k := "manifests: ., image: app"
	switch field {
	case "migrate job":
		k += ", migrate: {job: " + jobFile(t, dir, text) + "}"
	case "image":
		k = "manifests: ., image: " + quoted
	default:
		k += ", " + field + ": " + quoted
	}
	_, err := config.Parse([]byte("forge: {git: {url: x}}\nruntime: {kind: kubernetes, kubernetes: {"+k+"}}"), dir, func(string) (string, bool) { return "", false })
	return err
}

// render makes a runtime with the template in field and renders a
// release's data (and its migrate Job).
func render(t *testing.T, dir, field, text string) error {
	o := Options{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Domain: "example.com", Image: "app"}
	switch field {
	case "namespace":
		o.Namespace = text
	case "image":
		o.Image = text
	case "url":
		o.URL = text
	case "migrate job":
		o.MigrateJob = jobFile(t, dir, text)
	}
	r, err := New(o, nil)
	if err != nil {
		return err
	}
	d, err := r.Data(release("pr-1", sha('a')))
	if err != nil {
		return err
	}
	t2, err := r.templatesFor(context.Background(), release("pr-1", sha('a')))
	if err != nil {
		return err
	}
	_, err = migrateJob(t2.migrate, nil, d)
	return err
}

// jobFile writes a migrate Job template whose name carries text.
func jobFile(t *testing.T, dir, text string) string {
	p := filepath.Join(dir, "job-"+strings.NewReplacer("/", "", "{", "", "}", "", " ", "", "|", "").Replace(text)+".yaml")
	job := "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: 'm-" + strings.ReplaceAll(text, "'", "''") + "'\n"
	if err := os.WriteFile(p, []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
