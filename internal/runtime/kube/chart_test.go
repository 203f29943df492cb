package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/kubetest"
)

const chartDir = "../../../deploy/helm/previewd"

var helmBin = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("../../../scripts/helm.sh").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("scripts/helm.sh: %w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("scripts/helm.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
})

// helm runs the real Helm (scripts/helm.sh builds it from its Go module
// once and caches it) with its own empty home directories.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := helmBin()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// renderChart renders the chart with `helm template`, with the values
// files (under testdata/chart) on top of the chart's defaults.
func renderChart(t *testing.T, release, namespace string, values ...string) string {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace}
	for _, v := range values {
		args = append(args, "--values", filepath.Join("testdata", "chart", v))
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestChartGolden compares `helm template` with default values to
// testdata/golden/chart.yaml, and with GitHub + PostgreSQL + Ingress
// values to testdata/golden/chart-github.yaml, and checks every document
// is valid YAML with a kind.
func TestChartGolden(t *testing.T) {
	for golden, values := range map[string][]string{
		"chart.yaml":        nil,
		"chart-github.yaml": {"github-postgres-ingress.yaml"},
	} {
		t.Run(golden, func(t *testing.T) {
			got := renderChart(t, "previewd", "previewd", values...)
			objs, err := decodeYAML("chart", []byte(got))
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]bool{}
			for _, o := range objs {
				kinds[o.GetKind()] = true
			}
			want := []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "PersistentVolumeClaim"}
			if values != nil {
				want = append(want, "Ingress")
			}
			for _, k := range want {
				if !kinds[k] {
					t.Errorf("chart renders no %s", k)
				}
			}
			path := filepath.Join("testdata", "golden", golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			w, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run ChartGolden -update)", err)
			}
			if got != string(w) {
				t.Errorf("chart rendering differs from %s (run with -update and review the diff):\n%s", path, got)
			}
		})
	}
}

// TestChartLint runs `helm lint --strict` (schema, templates with
// missingkey=error) with the default values and each values file.
func TestChartLint(t *testing.T) {
	for _, values := range [][]string{nil, {"github-postgres-ingress.yaml"}, {"ha.yaml"}} {
		args := []string{"lint", "--strict", chartDir}
		for _, v := range values {
			args = append(args, "--values", filepath.Join("testdata", "chart", v))
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
	// Two replicas render with leader election, the shared store and no
	// per-pod volume.
	objs, err := decodeYAML("chart", []byte(renderChart(t, "previewd", "previewd", "ha.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "PersistentVolumeClaim" {
			t.Error("two replicas would share one ReadWriteOnce claim")
		}
		if o.GetKind() == "Deployment" {
			if n, _, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "replicas"); fmt.Sprint(n) != "2" {
				t.Errorf("replicas = %v", n)
			}
		}
	}
}

// TestChartRefuses: values that would install but not run fail the
// render with a message that says what to set; unknown keys fail the
// schema.
func TestChartRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		set  []string
		want string
	}{
		"two replicas on SQLite":          {[]string{"replicaCount=2", "persistence.enabled=false"}, "config.store.kind: postgres"},
		"two replicas without a leader":   {[]string{"replicaCount=2", "persistence.enabled=false", "config.store.kind=postgres", "config.runtime.kubernetes.leaderElection.enabled=false"}, "leaderElection.enabled: true"},
		"two replicas on one volume":      {[]string{"replicaCount=2", "config.store.kind=postgres"}, "persistence.enabled: false"},
		"an Ingress without a host":       {[]string{"ingress.enabled=true"}, "ingress.host"},
		"an unknown top-level value":      {[]string{"replicas=2"}, "'replicas' not allowed"},
		"an unknown nested value":         {[]string{"ingress.hosts=x"}, "'hosts' not allowed"},
		"a mistyped value":                {[]string{"replicaCount=two"}, "replicaCount"},
		"an extra mount without its path": {[]string{"extraVolumeMounts[0].name=x"}, "mountPath"},
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"template", "previewd", chartDir}
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			_, err := helm(t, args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("helm template --set %v: %v; want an error naming %q", c.set, err, c.want)
			}
		})
	}
}

// TestChartChecksumRollsThePod: a config change changes the pod
// template, so the Deployment rolls.
func TestChartChecksumRollsThePod(t *testing.T) {
	sum := func(args ...string) string {
		out, err := helm(t, append([]string{"template", "previewd", chartDir, "--show-only", "templates/deployment.yaml"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeYAML("deployment", []byte(out))
		if err != nil || len(objs) != 1 {
			t.Fatalf("%v %d", err, len(objs))
		}
		v, _, _ := unstructured.NestedString(objs[0].Object, "spec", "template", "metadata", "annotations", "checksum/config")
		return v
	}
	a, b, c := sum(), sum("--set", "config.domain=other.example.com"), sum("--set", "manifests.a\\.yaml=x: 1")
	if a == "" || a == b || a == c {
		t.Errorf("checksum/config: %q, with another domain %q, with a manifest %q", a, b, c)
	}
}

// TestChartConfigValidates builds the previewd container's file system
// and environment from the rendered chart (its volume mounts, its env and
// envFrom, the Secrets the values name, as an operator creates them) and
// loads the config it is started with through config.Parse, defaults and
// validation included: every ${VAR} is set, every file and directory it
// names is mounted, and the data dir is writable.
func TestChartConfigValidates(t *testing.T) {
	secrets := map[string]map[string]string{
		"previewd-secrets":    {"GITHUB_WEBHOOK_SECRET": "s3cret", "PREVIEWD_ADMIN_TOKEN": "an-admin-token-of-32-characters!"},
		"pg-admin":            {"url": "postgres://admin:pw@postgres.databases.svc:5432/postgres"},
		"pg-production":       {"url": "postgres://markdown_editor:pw@postgres.databases.svc:5432/markdown_editor"},
		"previewd-github-app": {"private-key.pem": "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n"},
	}
	objs, err := decodeYAML("chart", []byte(renderChart(t, "previewd", "previewd", "github-postgres-ingress.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	pod := podOf(t, objs)
	root := t.TempDir()
	c, mounts := pod.container, pod.mounts
	for _, m := range mounts {
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if m.SubPath != "" {
			t.Errorf("%s is mounted with subPath: the kubelet never updates it", m.MountPath)
		}
		v, ok := pod.volumes[m.Name]
		if !ok {
			t.Fatalf("mount %s names no volume", m.Name)
		}
		var files map[string]string
		switch {
		case v.ConfigMap != nil:
			files, ok = pod.configMaps[v.ConfigMap.Name]
			if !ok {
				t.Errorf("volume %s: the chart renders no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			files = pick(files, v.ConfigMap.Items)
		case v.Secret != nil:
			files, ok = secrets[v.Secret.SecretName]
			if !ok {
				t.Errorf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
			}
			files = pick(files, v.Secret.Items)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	vars := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.SecretRef != nil:
			s, ok := secrets[from.SecretRef.Name]
			if !ok {
				t.Errorf("envFrom: no Secret %s", from.SecretRef.Name)
			}
			maps.Copy(vars, s)
		case from.ConfigMapRef != nil:
			maps.Copy(vars, pod.configMaps[from.ConfigMapRef.Name])
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			vars[e.Name] = "previewd"
		case e.ValueFrom.SecretKeyRef != nil:
			v, ok := secrets[e.ValueFrom.SecretKeyRef.Name][e.ValueFrom.SecretKeyRef.Key]
			if !ok {
				t.Errorf("env %s: no key %s in Secret %s", e.Name, e.ValueFrom.SecretKeyRef.Key, e.ValueFrom.SecretKeyRef.Name)
			}
			vars[e.Name] = v
		}
	}
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("previewd is not started with --config: %v", c.Args)
	}
	file := c.Args[i+1]
	raw, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatalf("the config file is not in the pod's file system: %v", err)
	}
	// Absolute paths in the config are the pod's: move them under root.
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(underRoot(doc, root, mounts))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, filepath.Join(root, filepath.Dir(file)), func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("the rendered pod's config does not load: %v", err)
	}
	// serve refuses a listen beyond loopback without auth.
	if err := cfg.CheckExposure(); err != nil {
		t.Errorf("serve would refuse the rendered pod's config: %v", err)
	}
	var writable bool
	for _, m := range mounts {
		if !m.ReadOnly && strings.HasPrefix(cfg.DataDir+"/", filepath.Join(root, m.MountPath)+"/") {
			writable = true
		}
	}
	if !writable {
		t.Errorf("dataDir %s is not on a writable volume (the root file system is read-only)", cfg.DataDir)
	}
}

type renderedPod struct {
	container  corev1.Container
	mounts     []corev1.VolumeMount
	volumes    map[string]corev1.Volume
	configMaps map[string]map[string]string
}

func podOf(t *testing.T, objs []*unstructured.Unstructured) renderedPod {
	t.Helper()
	p := renderedPod{volumes: map[string]corev1.Volume{}, configMaps: map[string]map[string]string{}}
	var dep *appsv1.Deployment
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment":
			dep = &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, dep, true); err != nil {
				t.Fatalf("Deployment: %v", err)
			}
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &cm, true); err != nil {
				t.Fatalf("ConfigMap: %v", err)
			}
			p.configMaps[cm.Name] = cm.Data
		}
	}
	if dep == nil || len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("the chart renders no Deployment with one container")
	}
	p.container = dep.Spec.Template.Spec.Containers[0]
	p.mounts = p.container.VolumeMounts
	for _, v := range dep.Spec.Template.Spec.Volumes {
		p.volumes[v.Name] = v
	}
	return p
}

// pick returns the files a ConfigMap or Secret volume shows: every key,
// or only items, under their paths.
func pick(data map[string]string, items []corev1.KeyToPath) map[string]string {
	if len(items) == 0 {
		return data
	}
	out := map[string]string{}
	for _, it := range items {
		if v, ok := data[it.Key]; ok {
			out[it.Path] = v
		}
	}
	return out
}

// underRoot moves every string that is a path under a mount to root.
func underRoot(v any, root string, mounts []corev1.VolumeMount) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = underRoot(e, root, mounts)
		}
	case []any:
		for i, e := range x {
			x[i] = underRoot(e, root, mounts)
		}
	case string:
		for _, m := range mounts {
			if x == m.MountPath || strings.HasPrefix(x, strings.TrimSuffix(m.MountPath, "/")+"/") {
				return filepath.Join(root, x)
			}
		}
	}
	return v
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
