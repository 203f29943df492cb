package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/kubetest"
	"github.com/previewd/previewd/internal/runtime/kube"
)

// TestCollectOnAFreshStoreKeepsOpenChanges starts previewd on an empty
// store (a pod without persistence, a new leader, a lost volume) in a
// cluster that already holds the namespace of an open branch: collecting
// orphans must not delete it before the reconciler has recorded the branch
// again. A namespace of a branch that is really gone is collected.
func TestCollectOnAFreshStoreKeepsOpenChanges(t *testing.T) {
	cp := kubetest.Shared(t)
	ctx := context.Background()
	dir := t.TempDir()
	repo, kc := repoAndKubeconfig(t, cp, dir, "open-branch")
	suffix := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	cs := kubernetes.NewForConfigOrDie(cp.Config())
	// What an earlier previewd, whose store is lost, left in the cluster.
	// Another previewd's (another instance) is never collected.
	open, gone, other := "c"+suffix+"-open-branch", "c"+suffix+"-closed-branch", "o"+suffix+"-closed-branch"
	instance := config.DefaultInstance(config.Forge{Kind: "git", Git: config.Git{URL: repo}})
	for ns, key := range map[string]string{open: "open-branch", gone: "closed-branch", other: "closed-branch"} {
		inst := instance
		if ns == other {
			inst = "another-project"
		}
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{kube.LabelManagedBy: kube.ManagedBy, kube.LabelEnv: key, kube.LabelInstance: inst}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	}

	yaml := fmt.Sprintf(`
domain: preview.example.com
forge: {git: {url: %s, pollInterval: 1h}}
database: {kind: none}
runtime:
  kind: argocd
  kubernetes:
    kubeconfig: %s
    namespace: "c%s-{{.Key}}"
    productionNamespace: "c%s-production"
    argocd: {token: t0ken}
`, repo, kc, suffix, suffix)
	cfg, err := config.Parse([]byte(yaml), dir, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(dir, "data")
	d, err := New(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()

	// The first sync's collection, before any reconcile has run.
	d.rec.Collect(ctx)

	ns, err := cs.CoreV1().Namespaces().Get(ctx, open, metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp != nil {
		t.Errorf("the open branch's namespace was collected: %v", err)
	}
	ns, err = cs.CoreV1().Namespaces().Get(ctx, other, metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp != nil {
		t.Errorf("another instance's namespace was collected: %v", err)
	}
	ns, err = cs.CoreV1().Namespaces().Get(ctx, gone, metav1.GetOptions{})
	if err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("the closed branch's namespace was not collected")
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Error(err)
	}
}
