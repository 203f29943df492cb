package kube

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"text/template"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/previewd/previewd/internal/kubetest"
)

const chartDir = "../../../deploy/helm/previewd"

// renderChart renders the Helm chart with Go's text/template and the few
// Helm functions the chart uses (helm itself is not a Debian package).
// The chart keeps to that subset so this stays exact.
func renderChart(t *testing.T, release, namespace string) string {
	t.Helper()
	var chart struct {
		Name       string `json:"name"`
		AppVersion string `json:"appVersion"`
	}
	var values map[string]any
	for file, v := range map[string]any{"Chart.yaml": &chart, "values.yaml": &values} {
		raw, err := os.ReadFile(filepath.Join(chartDir, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	root := template.New("chart").Option("missingkey=zero")
	root.Funcs(template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var b strings.Builder
			err := root.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		"toYaml": func(v any) (string, error) {
			b, err := yaml.Marshal(v)
			return strings.TrimSuffix(string(b), "\n"), err
		},
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"quote":      func(s any) string { return `"` + strings.ReplaceAll(toString(s), `"`, `\"`) + `"` },
		"default":    func(def, v any) any { return map[bool]any{true: def, false: v}[v == nil || v == ""] },
		"trunc":      func(n int, s string) string { return s[:min(n, len(s))] },
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
	})
	files, _ := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	sort.Strings(files)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := root.New(filepath.Base(f)).Parse(string(raw)); err != nil {
			t.Fatal(err)
		}
	}
	data := map[string]any{
		"Values":  values,
		"Release": map[string]any{"Name": release, "Namespace": namespace},
		"Chart":   map[string]any{"Name": chart.Name, "AppVersion": chart.AppVersion},
	}
	var out bytes.Buffer
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "_") {
			continue
		}
		var b bytes.Buffer
		if err := root.ExecuteTemplate(&b, name, data); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(b.String()) == "" {
			continue
		}
		out.WriteString("---\n# Source: previewd/templates/" + name + "\n")
		out.WriteString(strings.TrimLeft(b.String(), "\n"))
		if !strings.HasSuffix(b.String(), "\n") {
			out.WriteString("\n")
		}
	}
	return out.String()
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(b))
}

// TestChartGolden compares the chart's rendering with default values to
// testdata/golden/chart.yaml, and checks every document is valid YAML with
// a kind.
func TestChartGolden(t *testing.T) {
	got := renderChart(t, "previewd", "previewd")
	objs, err := decodeYAML("chart", []byte(got))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "PersistentVolumeClaim"} {
		if !kinds[k] {
			t.Errorf("chart renders no %s", k)
		}
	}
	golden := filepath.Join("testdata", "golden", "chart.yaml")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run ChartGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("chart rendering differs from %s (run with -update and review the diff):\n%s", golden, got)
	}
}

// TestChartRBACIsEnough runs the runtime as a user that has only the
// chart's ClusterRole and Role: creating, updating, migrating, tearing
// down, collecting and leader election all work without the admin token.
func TestChartRBACIsEnough(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	suffix := uniqueKey("rbac")
	releaseNS := suffix
	objs, err := decodeYAML("chart", []byte(renderChart(t, suffix, releaseNS)))
	if err != nil {
		t.Fatal(err)
	}
	admin := f.runtime(Options{})
	user := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: kubetest.UserName}
	var clusterRole, role string
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			clusterRole = o.GetName()
		case "Role":
			role = o.GetName()
		default:
			continue
		}
		o.SetNamespace(releaseNS)
		if _, err := admin.apply(ctx, release("rbac-setup", sha('0')), Data{Namespace: releaseNS, SHA: sha('0')}, []*unstructured.Unstructured{o}, false); err != nil {
			t.Fatal(err)
		}
	}
	f.cleanup(releaseNS)
	t.Cleanup(func() {
		f.cs.RbacV1().ClusterRoles().Delete(ctx, clusterRole, metav1.DeleteOptions{})
		f.cs.RbacV1().ClusterRoleBindings().Delete(ctx, clusterRole, metav1.DeleteOptions{})
	})
	if _, err := f.cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: clusterRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{user},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.RbacV1().RoleBindings(releaseNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		Subjects:   []rbacv1.Subject{user},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	o := Options{Config: f.cp.UserConfig(), Manifests: "testdata/app", ApplyManifests: true, Domain: "preview.example.com",
		Image: "registry.example.com/shop:{{.SHA}}", PollInterval: 50 * time.Millisecond, RolloutTimeout: 30 * time.Second,
		DeleteTimeout: time.Minute, MigrateCommand: []string{"migrate"}}
	r, err := New(o, f.store)
	if err != nil {
		t.Fatal(err)
	}
	key := uniqueKey("asuser")
	ns := "preview-" + key
	f.cleanup(ns)
	f.markAvailable(ns)
	rel := release(key, sha('5'))
	f.finishJob(ns, "previewd-migrate-5555555", true)
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := r.Migrate(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Running(ctx, key); err != nil {
		t.Fatal(err)
	}
	// Every environment there is is live: Collect only has to be allowed
	// to look.
	if _, err := r.Collect(ctx, func(ctx context.Context) (map[string]bool, error) {
		return allKeys(t, f), nil
	}); err != nil {
		t.Fatal(err)
	}
	its, _ := f.store.Items(ctx, key)
	if err := r.Delete(ctx, key, its); err != nil {
		t.Fatal(err)
	}

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	leading, _, err := Elect(lctx, kubernetes.NewForConfigOrDie(f.cp.UserConfig()), LeaderOptions{
		Namespace: releaseNS, Name: "previewd", LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-leading:
	case <-time.After(20 * time.Second):
		t.Fatal("the chart's Role does not allow leader election")
	}
}

// allKeys returns the keys of every environment namespace in the cluster.
func allKeys(t *testing.T, f *fixture) map[string]bool {
	keep := map[string]bool{}
	nss, err := f.cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nss.Items {
		keep[n.Labels[LabelEnv]] = true
	}
	return keep
}
