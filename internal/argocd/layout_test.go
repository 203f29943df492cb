package argocd

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestReferenceLayout checks that deploy/argocd hangs together: the
// ApplicationSet's plugin generator names the ConfigMap that points at
// previewd and is polled; its kustomize source sets namespace, image, host
// and Secret from the generator's parameters; and the production
// Application deploys into the namespace previewd's config in the README
// provisions for production.
func TestReferenceLayout(t *testing.T) {
	const dir = "../../deploy/argocd"
	objs := map[string]*unstructured.Unstructured{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			o := &unstructured.Unstructured{Object: m}
			objs[o.GetKind()+"/"+o.GetName()] = o
		}
	}
	str := func(o *unstructured.Unstructured, path ...string) string {
		t.Helper()
		s, _, _ := unstructured.NestedString(o.Object, path...)
		return s
	}
	var appset *unstructured.Unstructured
	for k, o := range objs {
		if strings.HasPrefix(k, "ApplicationSet/") {
			appset = o
		}
	}
	if appset == nil || objs["Application/markdown-editor-root"] == nil || objs["Application/markdown-editor-production"] == nil {
		t.Fatalf("want an app-of-apps, the production Application and an ApplicationSet; have %v", keysOf(objs))
	}
	gens, _, _ := unstructured.NestedSlice(appset.Object, "spec", "generators")
	if len(gens) != 1 {
		t.Fatalf("generators = %v", gens)
	}
	plugin, _ := gens[0].(map[string]any)["plugin"].(map[string]any)
	cm, _, _ := unstructured.NestedString(plugin, "configMapRef", "name")
	if objs["ConfigMap/"+cm] == nil || str(objs["ConfigMap/"+cm], "data", "baseUrl") == "" {
		t.Errorf("the plugin generator's ConfigMap %q is not in the layout", cm)
	}
	if n, _ := plugin["requeueAfterSeconds"].(float64); n <= 0 {
		t.Errorf("requeueAfterSeconds = %v", plugin["requeueAfterSeconds"])
	}
	k, _, _ := unstructured.NestedMap(appset.Object, "spec", "template", "spec", "source", "kustomize")
	text, _ := yaml.Marshal(k)
	for _, p := range []string{"{{.namespace}}", "{{.image}}", "{{.host}}", "{{.secret}}"} {
		if !strings.Contains(string(text), p) {
			t.Errorf("the ApplicationSet's kustomize source does not use %s:\n%s", p, text)
		}
	}

	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`productionNamespace:\s*(\S+)`).FindSubmatch(readme)
	prodNS := "production" // previewd's default
	if m != nil {
		prodNS = string(m[1])
	}
	if got := str(objs["Application/markdown-editor-production"], "spec", "destination", "namespace"); got != prodNS {
		t.Errorf("production deploys into %q, but previewd provisions production's Secret in %q", got, prodNS)
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
