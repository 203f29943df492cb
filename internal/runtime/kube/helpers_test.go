package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/kubetest"
	"github.com/previewd/previewd/internal/store"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

type fixture struct {
	t     testing.TB
	cp    *kubetest.ControlPlane
	cs    kubernetes.Interface
	store *store.Store
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cp := kubetest.Shared(t)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "previewd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fixture{t: t, cp: cp, cs: kubernetes.NewForConfigOrDie(cp.Config()), store: st}
}

// runtime returns a runtime over the test manifests (unless o names
// others), with short waits.
func (f *fixture) runtime(o Options) *Runtime {
	f.t.Helper()
	o.Config = f.cp.Config()
	if o.Manifests == "" {
		o.Manifests = "testdata/app"
	}
	o.ApplyManifests = true
	if o.Domain == "" {
		o.Domain = "preview.example.com"
	}
	if o.Image == "" {
		o.Image = "registry.example.com/shop:{{.SHA}}"
	}
	if o.PollInterval == 0 {
		o.PollInterval = 50 * time.Millisecond
	}
	if o.RolloutTimeout == 0 {
		o.RolloutTimeout = 30 * time.Second
	}
	if o.DeleteTimeout == 0 {
		o.DeleteTimeout = 60 * time.Second
	}
	r, err := New(o, f.store)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// uniqueKey returns prefix-<random>, so reruns against the same control
// plane never meet a namespace still terminating.
func uniqueKey(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func release(key, sha string) *env.Release {
	src := env.Source{Key: key, Kind: env.KindBranch, Branch: "feature/" + key, SHA: sha}
	url := "http://" + key + ".localhost:8080"
	vars := env.Vars(src, url)
	vars["DATABASE_URL"] = "postgres://u:p@db:5432/app?search_path=" + key
	return &env.Release{Source: src, URL: url, Vars: vars}
}

func sha(c byte) string {
	b := make([]byte, 40)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// markAvailable plays kubelet and deployment controller for the
// namespace: every Deployment there is reported rolled out and Available,
// until the test ends.
func (f *fixture) markAvailable(ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			ds, err := f.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range ds.Items {
					d := &ds.Items[i]
					if d.Status.ObservedGeneration == d.Generation && d.Status.AvailableReplicas > 0 {
						continue
					}
					setAvailable(d)
					f.cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
}

func setAvailable(d *appsv1.Deployment) {
	n := int32(1)
	if d.Spec.Replicas != nil {
		n = *d.Spec.Replicas
	}
	now := metav1.Now()
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation,
		Replicas:           n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
		Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: now, LastTransitionTime: now},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", LastUpdateTime: now, LastTransitionTime: now},
		},
	}
}

// waitNamespaceGone waits until the namespace no longer exists.
func (f *fixture) waitNamespaceGone(ns string, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		_, err := f.cs.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("namespace %s still there after %s", ns, timeout)
}

// cleanup deletes the environment's namespace when the test ends, without
// waiting.
func (f *fixture) cleanup(ns string) {
	f.t.Cleanup(func() {
		f.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
}

func (f *fixture) items(key string) map[string]env.Item {
	f.t.Helper()
	its, err := f.store.Items(context.Background(), key)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]env.Item{}
	for _, it := range its {
		out[it.Name] = it
	}
	return out
}
