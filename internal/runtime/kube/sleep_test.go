package kube

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/previewd/previewd/internal/kubetest"
	"github.com/previewd/previewd/internal/testsvc"
)

// withControllers is a second control plane that also runs the
// deployment, replica set and stateful set controllers, so that scaling
// really creates and removes pods (the shared one leaves Deployments to
// the tests). It is started by the first test that needs it.
var withControllers = &testsvc.Shared[*kubetest.ControlPlane]{
	Start: func(ctx context.Context) (*kubetest.ControlPlane, error) {
		ctrl := append([]string{"deployment-controller", "replicaset-controller", "statefulset-controller"}, kubetest.Controllers...)
		return kubetest.Start(ctx, kubetest.Options{Controllers: ctrl})
	},
	Timeout:      3 * time.Minute,
	NotInstalled: kubetest.ErrNotInstalled,
}

// newFixtureWithControllers is newFixture on withControllers.
func newFixtureWithControllers(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	f.cp = withControllers.Get(t)
	f.cs = kubernetes.NewForConfigOrDie(f.cp.Config())
	return f
}

// playKubelet reports every pod of the namespace Running and Ready until
// the test ends, as a kubelet would once its containers start.
func (f *fixture) playKubelet(ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pods, err := f.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range pods.Items {
					p := &pods.Items[i]
					if p.Status.Phase == corev1.PodRunning || p.DeletionTimestamp != nil {
						continue
					}
					setRunning(p)
					f.cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
}

func setRunning(p *corev1.Pod) {
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.StartTime = &now
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
}

// sleepManifests are a Deployment declaring 2 replicas, one declaring
// none (the cluster's default, 1), a StatefulSet of 1, and what must
// survive a sleep: a Service, a ConfigMap and a volume claim.
func sleepManifests(t *testing.T) string {
	dir := t.TempDir()
	files := map[string]string{
		"web.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "{{.Image}}"}]
`,
		"worker.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: worker}
spec:
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers: [{name: worker, image: "{{.Image}}"}]
`,
		"cache.yaml": `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: cache}
spec:
  replicas: 1
  serviceName: cache
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec:
      containers: [{name: cache, image: "{{.Image}}"}]
`,
		"rest.yaml": `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {A: b}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// replicas returns the spec.replicas of web, worker and cache, and their
// noted replicas (AnnotationReplicas).
func (f *fixture) replicas(ns string) (spec, noted map[string]string) {
	f.t.Helper()
	ctx := context.Background()
	spec, noted = map[string]string{}, map[string]string{}
	for _, name := range []string{"web", "worker"} {
		d, err := f.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			f.t.Fatal(err)
		}
		spec[name] = strconv.Itoa(int(replicasOf(d.Spec.Replicas)))
		noted[name] = d.Annotations[AnnotationReplicas]
	}
	s, err := f.cs.AppsV1().StatefulSets(ns).Get(ctx, "cache", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	spec["cache"] = strconv.Itoa(int(replicasOf(s.Spec.Replicas)))
	noted["cache"] = s.Annotations[AnnotationReplicas]
	return spec, noted
}

// waitPods waits until the namespace has n pods not being deleted, per
// app label.
func (f *fixture) waitPods(ns string, want map[string]int) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got map[string]int
	for time.Now().Before(deadline) {
		pods, err := f.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			f.t.Fatal(err)
		}
		got = map[string]int{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				got[p.Labels["app"]]++
			}
		}
		if equalCounts(got, want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatalf("pods in %s = %v, want %v", ns, got, want)
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func (f *fixture) running(rt *Runtime, key string) bool {
	f.t.Helper()
	ok, _, err := rt.Running(context.Background(), key)
	if err != nil {
		f.t.Fatal(err)
	}
	return ok
}

// TestSleepAndWake: Sleep scales the Deployments and the StatefulSet to 0
// and the controllers remove their pods, while the namespace, Service,
// ConfigMap, Secret and volume claim stay; the environment is not
// running; a second Sleep changes nothing; Deploy of the same release
// gives back the replicas the manifests declare (and the default one's)
// and the pods come back.
func TestSleepAndWake(t *testing.T) {
	f := newFixtureWithControllers(t)
	ctx := context.Background()
	key := uniqueKey("sleep")
	ns := "preview-" + key
	f.cleanup(ns)
	f.playKubelet(ns)
	rt := f.runtime(Options{Manifests: sleepManifests(t), Instance: "shop"})
	rel := release(key, sha('5'))

	if err := rt.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	all := map[string]int{"web": 2, "worker": 1, "cache": 1}
	f.waitPods(ns, all)
	if !f.running(rt, key) {
		t.Fatal("not running after deploy")
	}

	if err := rt.Sleep(ctx, key); err != nil {
		t.Fatal(err)
	}
	spec, noted := f.replicas(ns)
	if want := map[string]string{"web": "0", "worker": "0", "cache": "0"}; !equalStrings(spec, want) {
		t.Errorf("replicas asleep = %v, want %v", spec, want)
	}
	if want := map[string]string{"web": "2", "worker": "1", "cache": "1"}; !equalStrings(noted, want) {
		t.Errorf("noted replicas = %v, want %v", noted, want)
	}
	f.waitPods(ns, map[string]int{})
	if f.running(rt, key) {
		t.Error("running while asleep")
	}
	n, err := f.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Annotations[AnnotationAsleep] == "" {
		t.Errorf("namespace annotations = %v", n.Annotations)
	}
	if _, err := f.cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("service asleep: %v", err)
	}
	if _, err := f.cs.CoreV1().ConfigMaps(ns).Get(ctx, "web-config", metav1.GetOptions{}); err != nil {
		t.Errorf("config map asleep: %v", err)
	}
	if _, err := f.cs.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{}); err != nil {
		t.Errorf("secret asleep: %v", err)
	}
	if _, err := f.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{}); err != nil {
		t.Errorf("volume claim asleep: %v", err)
	}

	// Sleeping again keeps what was noted.
	if err := rt.Sleep(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, noted := f.replicas(ns); !equalStrings(noted, map[string]string{"web": "2", "worker": "1", "cache": "1"}) {
		t.Errorf("noted replicas after a second sleep = %v", noted)
	}
	if f.running(rt, key) {
		t.Error("running after a second sleep")
	}

	// The wake: Deploy of the same release.
	if err := rt.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	spec, noted = f.replicas(ns)
	if want := map[string]string{"web": "2", "worker": "1", "cache": "1"}; !equalStrings(spec, want) {
		t.Errorf("replicas awake = %v, want %v", spec, want)
	}
	if want := map[string]string{"web": "", "worker": "", "cache": ""}; !equalStrings(noted, want) {
		t.Errorf("noted replicas awake = %v", noted)
	}
	f.waitPods(ns, all)
	if !f.running(rt, key) {
		t.Error("not running after the wake")
	}
	d, err := f.cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !appliesReplicas(d.ManagedFields) {
		t.Errorf("previewd does not own web's replicas again: %v", d.ManagedFields)
	}
	if d.Status.AvailableReplicas != 2 {
		t.Errorf("web available = %d", d.Status.AvailableReplicas)
	}
	// And it sleeps again.
	if err := rt.Sleep(ctx, key); err != nil {
		t.Fatal(err)
	}
	f.waitPods(ns, map[string]int{})
}

// TestSleepNothingApplied: an environment with nothing applied sleeps
// without error.
func TestSleepNothingApplied(t *testing.T) {
	f := newFixture(t)
	rt := f.runtime(Options{})
	key := uniqueKey("none")
	if err := rt.Sleep(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if f.running(rt, key) {
		t.Error("running")
	}
}

func equalStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
