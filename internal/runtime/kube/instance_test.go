package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCollectScopedToInstanceLabel: two previewds (instances shop and
// blog) on one cluster, with the same environment key in namespaces of
// their own: each Collect and Delete touches only its own namespace, and
// everything applied carries the instance label.
func TestCollectScopedToInstanceLabel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := uniqueKey("both")
	shopI, blogI := uniqueKey("shop"), uniqueKey("blog")
	shop := f.runtime(Options{Instance: shopI, Namespace: "shop-{{.Key}}"})
	blog := f.runtime(Options{Instance: blogI, Namespace: "blog-{{.Key}}"})
	for _, ns := range []string{"shop-" + key, "blog-" + key} {
		f.cleanup(ns)
		f.markAvailable(ns)
	}
	for _, r := range []*Runtime{shop, blog} {
		if err := r.Deploy(ctx, release(key, sha('a'))); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := f.cs.CoreV1().Namespaces().Get(ctx, "shop-"+key, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.Labels[LabelInstance]; got != shopI {
		t.Fatalf("namespace label %s=%q; want %q", LabelInstance, got, shopI)
	}
	dep, err := f.cs.AppsV1().Deployments("shop-"+key).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dep.Labels[LabelInstance]; got != shopI {
		t.Fatalf("deployment label %s=%q; want %q", LabelInstance, got, shopI)
	}
	// Each sees only its own namespace as the environment's.
	if ok, _, err := shop.Running(ctx, key); err != nil || !ok {
		t.Fatalf("shop Running: %v, %v", ok, err)
	}

	// shop's key is dead: shop collects its namespace, not blog's.
	none := func(context.Context) (map[string]bool, error) { return map[string]bool{}, nil }
	removed, err := shop.Collect(ctx, none)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(removed, "\n")
	if !strings.Contains(joined, "namespace shop-"+key) || strings.Contains(joined, "blog-") {
		t.Fatalf("shop collected %q", removed)
	}
	f.waitNamespaceGone("shop-"+key, 30*time.Second)
	if _, err := f.cs.CoreV1().Namespaces().Get(ctx, "blog-"+key, metav1.GetOptions{}); err != nil {
		t.Fatalf("blog's namespace: %v", err)
	}
	// shop's teardown of the key leaves blog's namespace too.
	if err := shop.Delete(ctx, key, nil); err != nil {
		t.Fatal(err)
	}
	if ns, err := f.cs.CoreV1().Namespaces().Get(ctx, "blog-"+key, metav1.GetOptions{}); err != nil || ns.DeletionTimestamp != nil {
		t.Fatalf("blog's namespace after shop's Delete: %v", err)
	}
	if _, err := blog.Collect(ctx, none); err != nil {
		t.Fatal(err)
	}
	f.waitNamespaceGone("blog-"+key, 30*time.Second)
}
