package kube

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/previewd/previewd/internal/tmpl"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGoldenManifests renders the example app's manifests and migration
// Job for a pull request and for production, as previewd applies them
// (with its labels and namespace), and compares them with testdata/golden.
func TestGoldenManifests(t *testing.T) {
	const dir = "../../../examples/markdown-editor/deploy"
	m, err := LoadManifests(filepath.Join(dir, "preview"))
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{o: Options{MigrateJob: filepath.Join(dir, "migrate-job.yaml")}}
	raw, err := os.ReadFile(r.o.MigrateJob)
	if err != nil {
		t.Fatal(err)
	}
	jobTmpl, err := tmpl.Parse("migrate job", string(raw))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]Data{
		"pull-request": {
			Key: "pr-42", Kind: "pull_request", Number: 42, Branch: "feature/Login-Page", BranchSlug: "feature-login-page",
			SHA: "4b825dc642cb6eb9a060e54bf8d69288fbee4904", ShortSHA: "4b825dc", Host: "pr-42.preview.example.com",
			URL: "https://pr-42.preview.example.com", Image: "ghcr.io/acme/markdown-editor:4b825dc642cb6eb9a060e54bf8d69288fbee4904",
			Namespace: "preview-pr-42", SecretName: SecretName,
		},
		"production": {
			Key: "production", Kind: "production", Branch: "main", BranchSlug: "main",
			SHA: "9c1185a5c5e9fc54612808977ee8f548b2258d31", ShortSHA: "9c1185a", Host: "production.preview.example.com",
			URL: "https://markdown-editor.example.com", Image: "ghcr.io/acme/markdown-editor:9c1185a5c5e9fc54612808977ee8f548b2258d31",
			Namespace: "markdown-editor", SecretName: SecretName, Production: true,
		},
	}
	for name, d := range tests {
		t.Run(name, func(t *testing.T) {
			objs, err := m.Render(d)
			if err != nil {
				t.Fatal(err)
			}
			job, err := migrateJob(jobTmpl, nil, d)
			if err != nil {
				t.Fatal(err)
			}
			objs = append(baseObjects(d, map[string]string{"PREVIEW_KEY": d.Key}), append(objs, job)...)
			var b bytes.Buffer
			for i, o := range objs {
				if o.GetKind() != "Namespace" && o.GetNamespace() == "" {
					o.SetNamespace(d.Namespace)
				}
				label(o, d.Key, "")
				if i > 0 {
					b.WriteString("---\n")
				}
				b.Write(mustYAML(t, o))
			}
			if u, ok := ingressURL(objs); !ok || u != d.URL {
				t.Errorf("URL from the Ingress = %q; want %q", u, d.URL)
			}
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run Golden -update to write it)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("rendered manifests differ from %s (run with -update and review the diff):\n%s", golden, b.String())
			}
		})
	}
}

func mustYAML(t *testing.T, o *unstructured.Unstructured) []byte {
	t.Helper()
	b, err := yaml.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKustomizationSubset(t *testing.T) {
	m, err := LoadManifests("../../../examples/markdown-editor/deploy/base")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := m.Render(Data{})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("%d objects; want 3", len(objs))
	}
	img, _, _ := unstructured.NestedSlice(objs[0].Object, "spec", "template", "spec", "containers")
	if got := img[0].(map[string]any)["image"]; got != "ghcr.io/acme/markdown-editor:latest" {
		t.Errorf("image = %v; want the kustomization's", got)
	}
}
