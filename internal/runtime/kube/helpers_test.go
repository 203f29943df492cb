package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/kubetest"
	"github.com/previewd/previewd/internal/store"
)

func TestMain(m *testing.M) {
	code := kubetest.Main(m)
	withControllers.Close()
	os.Exit(code)
}

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

// markAvailable reports every Deployment in the namespace rolled out and
// Available until the test ends (there is no kubelet).
func (f *fixture) markAvailable(ns string) { kubetest.MarkAvailable(f.t, f.cs, ns) }

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
