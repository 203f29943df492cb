package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/env"
)

func TestCreateUpdatePruneTeardown(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	for _, n := range []string{"configmap.yaml", "deployment.yaml", "service.yaml", "ingress.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata/app", n))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, n), data, 0o644)
	}
	key := uniqueKey("create")
	ns := "preview-" + key
	f.cleanup(ns)
	f.markAvailable(ns)

	// Create.
	r := f.runtime(Options{Manifests: dir})
	rel := release(key, sha('a'))
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if want := "https://" + key + ".preview.example.com"; rel.URL != want || rel.Vars["PREVIEW_URL"] != want {
		t.Errorf("URL = %q, PREVIEW_URL = %q; want %q from the Ingress", rel.URL, rel.Vars["PREVIEW_URL"], want)
	}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	n, err := f.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[LabelManagedBy] != ManagedBy || n.Labels[LabelEnv] != key {
		t.Errorf("namespace labels = %v", n.Labels)
	}
	sec, err := f.cs.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(sec.Data["DATABASE_URL"]); got != rel.Vars["DATABASE_URL"] {
		t.Errorf("secret DATABASE_URL = %q", got)
	}
	if got := string(sec.Data["PREVIEW_SHA"]); got != sha('a') {
		t.Errorf("secret PREVIEW_SHA = %q", got)
	}
	d, err := f.cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/shop:"+sha('a') {
		t.Errorf("image = %q", img)
	}
	if d.Labels[LabelEnv] != key || d.Spec.Template.Labels[LabelEnv] != key {
		t.Errorf("deployment labels = %v, pod labels = %v", d.Labels, d.Spec.Template.Labels)
	}
	managers := map[string]bool{}
	for _, mf := range d.ManagedFields {
		if mf.Operation == metav1.ManagedFieldsOperationApply {
			managers[mf.Manager] = true
		}
	}
	if !managers[FieldManager] {
		t.Errorf("deployment not applied by field manager %s: %v", FieldManager, d.ManagedFields)
	}
	if _, err := f.cs.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	items := f.items(key)
	for _, id := range []string{ns, "Secret//" + ns + "/" + SecretName, "Deployment.apps/" + ns + "/web", "Service/" + ns + "/web", "ConfigMap/" + ns + "/web-config", "Ingress.networking.k8s.io/" + ns + "/web"} {
		id = strings.Replace(id, "Secret//", "Secret/", 1)
		if _, ok := items[id]; !ok {
			t.Errorf("inventory lacks %s; has %v", id, keys(items))
		}
	}
	running, at, err := r.Running(ctx, key)
	if err != nil || !running || at != sha('a') {
		t.Errorf("Running = %v, %q, %v; want true at the first SHA", running, at, err)
	}

	// Update: a new SHA is a new image; the ConfigMap left the templates
	// (and the Deployment no longer refers to it), so it is pruned.
	os.Remove(filepath.Join(dir, "configmap.yaml"))
	dep, _ := os.ReadFile(filepath.Join(dir, "deployment.yaml"))
	os.WriteFile(filepath.Join(dir, "deployment.yaml"), []byte(strings.Replace(string(dep), "        - configMapRef: {name: web-config}\n", "", 1)), 0o644)
	// The same runtime: a directory of this machine is read again at
	// every render, not once at start.
	rel = release(key, sha('b'))
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	d, _ = f.cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/shop:"+sha('b') {
		t.Errorf("image after update = %q", img)
	}
	if _, err := f.cs.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap not pruned: %v", err)
	}
	if _, ok := f.items(key)["ConfigMap/"+ns+"/web-config"]; ok {
		t.Error("pruned ConfigMap still in the inventory")
	}
	if _, at, _ := r.Running(ctx, key); at != sha('b') {
		t.Errorf("Running SHA = %q after update", at)
	}

	// Teardown: the namespace is really gone before Delete returns.
	its, _ := f.store.Items(ctx, key)
	start := time.Now()
	if err := r.Delete(ctx, key, its); err != nil {
		t.Fatal(err)
	}
	t.Logf("teardown took %s", time.Since(start).Round(time.Millisecond))
	if _, err := f.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace still there after Delete: %v", err)
	}
	if left := f.items(key); len(left) != 0 {
		t.Errorf("inventory after teardown: %v", keys(left))
	}
	if running, _, _ := r.Running(ctx, key); running {
		t.Error("Running after teardown")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRestartInTheMiddleOfAnApply(t *testing.T) {
	f := newFixture(t)
	key := uniqueKey("crash")
	ns := "preview-" + key
	f.cleanup(ns)
	f.markAvailable(ns)

	// The first previewd dies after two objects are applied.
	ctx, cancel := context.WithCancel(context.Background())
	applied := 0
	r := f.runtime(Options{OnApplied: func(string) {
		applied++
		if applied == 2 {
			cancel()
		}
	}})
	rel := release(key, sha('c'))
	if err := r.Deploy(ctx, rel); err == nil {
		t.Fatal("Deploy succeeded despite the cancelled context")
	}
	// Everything was recorded before it was applied.
	if n := len(f.items(key)); n != 6 {
		t.Errorf("inventory has %d items after the crash; want all 6 recorded before applying: %v", n, keys(f.items(key)))
	}
	if _, err := f.cs.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("deployment exists before the restart: %v", err)
	}

	// The next previewd (a new runtime over the same store) finishes it.
	r2 := f.runtime(Options{})
	if err := r2.Deploy(context.Background(), rel); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}

	// A crash in the middle of the next apply, then a teardown: the
	// inventory still finds everything.
	ctx, cancel = context.WithCancel(context.Background())
	applied = 0
	r3 := f.runtime(Options{OnApplied: func(string) {
		applied++
		if applied == 1 {
			cancel()
		}
	}})
	r3.Deploy(ctx, release(key, sha('d')))
	its, _ := f.store.Items(context.Background(), key)
	if err := r2.Delete(context.Background(), key, its); err != nil {
		t.Fatal(err)
	}
	if left := f.items(key); len(left) != 0 {
		t.Errorf("inventory after teardown: %v", keys(left))
	}
}

func TestCollectOrphans(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	live, dead := uniqueKey("live"), uniqueKey("dead")
	f.cleanup("preview-" + live)
	f.cleanup("preview-" + dead)
	r := f.runtime(Options{})
	for _, k := range []string{live, dead} {
		f.markAvailable("preview-" + k)
		if err := r.Deploy(ctx, release(k, sha('e'))); err != nil {
			t.Fatal(err)
		}
	}
	// A stray object of the dead environment in the live one's namespace.
	stray := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "stray", Namespace: "preview-" + live,
		Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: dead}}}
	if _, err := f.cs.CoreV1().Secrets("preview-"+live).Create(ctx, stray, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Other tests' environments are live too, as far as this test knows.
	keep := map[string]bool{live: true}
	nss, _ := f.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy})
	for _, n := range nss.Items {
		if k := n.Labels[LabelEnv]; k != dead {
			keep[k] = true
		}
	}
	removed, err := r.Collect(ctx, func(context.Context) (map[string]bool, error) { return keep, nil })
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(removed, "\n")
	if !strings.Contains(joined, "namespace preview-"+dead) || !strings.Contains(joined, "Secret preview-"+live+"/stray") {
		t.Errorf("collected %q", removed)
	}
	if strings.Contains(joined, "namespace preview-"+live+"\n") {
		t.Errorf("collected the live namespace: %q", removed)
	}
	f.waitNamespaceGone("preview-"+dead, 30*time.Second)
	if _, err := f.cs.CoreV1().Namespaces().Get(ctx, "preview-"+live, metav1.GetOptions{}); err != nil {
		t.Errorf("live namespace: %v", err)
	}
	if _, err := f.cs.AppsV1().Deployments("preview-"+live).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("live deployment: %v", err)
	}
}

func TestRolloutFailureSaysWhy(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := uniqueKey("fail")
	ns := "preview-" + key
	f.cleanup(ns)
	// Room for the fake kubelet below to make its pod on a loaded machine:
	// the reason is read when the timeout ends.
	r := f.runtime(Options{RolloutTimeout: 10 * time.Second})

	// Play kubelet: a pod of the Deployment cannot pull its image.
	go func() {
		for i := 0; i < 100; i++ {
			if _, err := f.cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f-abcde", Namespace: ns, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken: new(bool),
				Containers:                   []corev1.Container{{Name: "web", Image: "registry.example.com/shop:" + sha('f')}},
			},
		}
		for i := 0; i < 100; i++ {
			p, err := f.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				time.Sleep(50 * time.Millisecond) // the default service account may not be there yet
				continue
			}
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", Image: pod.Spec.Containers[0].Image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}
			f.cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
			return
		}
	}()
	err := r.Deploy(ctx, release(key, sha('f')))
	var se *env.StepError
	if !errors.As(err, &se) || se.Step != "rollout" {
		t.Fatalf("Deploy = %v; want a rollout StepError", err)
	}
	if !strings.Contains(se.Err.Error(), "ImagePullBackOff") {
		t.Errorf("error %q does not give the pod's reason", se.Err)
	}
	if !strings.Contains(se.Tail, "pod/web-5d8f-abcde") {
		t.Errorf("tail %q does not list the pod", se.Tail)
	}
	t.Logf("%v\n%s", se, se.Tail)
}

func TestArgoCDModeProvisionsOnly(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := uniqueKey("argo")
	ns := "preview-" + key
	f.cleanup(ns)
	r, err := New(Options{Config: f.cp.Config(), Domain: "preview.example.com", Manifests: "testdata/app"}, f.store)
	if err != nil {
		t.Fatal(err)
	}
	rel := release(key, sha('1'))
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("argocd mode applied the app: %v", err)
	}
}
