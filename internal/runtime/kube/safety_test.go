package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/env"
)

// TestPruneAndDeleteOnlyTouchPreviewdsObjects: an inventory entry is
// recorded before its object is applied, so it can name an object previewd
// never took over (the apply failed, or someone else made it since).
// Neither pruning nor teardown may delete such an object or namespace.
func TestPruneAndDeleteOnlyTouchPreviewdsObjects(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := uniqueKey("owner")
	ns := "preview-" + key
	f.cleanup(ns)
	f.markAvailable(ns)
	team := uniqueKey("team")
	if _, err := f.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.cleanup(team)
	if _, err := f.cs.CoreV1().ConfigMaps(team).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shared"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	foreign := []env.Item{
		objRef{APIVersion: "v1", Kind: "ConfigMap", Namespace: team, Name: "shared"}.item(),
		objRef{APIVersion: "v1", Kind: "Namespace", Name: team}.item(),
	}
	record := func() {
		for _, it := range foreign {
			if err := f.store.PutItem(ctx, key, it); err != nil {
				t.Fatal(err)
			}
		}
	}
	intact := func(when string) {
		t.Helper()
		n, err := f.cs.CoreV1().Namespaces().Get(ctx, team, metav1.GetOptions{})
		if err != nil || n.DeletionTimestamp != nil {
			t.Fatalf("%s: the team's namespace was deleted (%v)", when, err)
		}
		cm, err := f.cs.CoreV1().ConfigMaps(team).Get(ctx, "shared", metav1.GetOptions{})
		if err != nil || cm.DeletionTimestamp != nil {
			t.Fatalf("%s: the team's ConfigMap was deleted (%v)", when, err)
		}
	}

	r := f.runtime(Options{})
	record()
	if err := r.Deploy(ctx, release(key, sha('a'))); err != nil {
		t.Fatal(err)
	}
	intact("after pruning")
	for _, it := range foreign {
		if _, ok := f.items(key)[it.Name]; ok {
			t.Errorf("%s is still in the inventory after pruning", it.Name)
		}
	}

	record()
	its, _ := f.store.Items(ctx, key)
	if err := r.Delete(ctx, key, its); err != nil {
		t.Fatal(err)
	}
	intact("after teardown")
	if _, err := f.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the environment's own namespace is still there: %v", err)
	}
	if left := f.items(key); len(left) != 0 {
		t.Errorf("inventory after teardown: %v", keys(left))
	}
}

// TestNamespaceIsNotTakenOver: a namespace template that lands on an
// existing namespace (a team's, another environment's, production's) must
// fail the apply rather than label the namespace as the environment's,
// which teardown would then delete.
func TestNamespaceIsNotTakenOver(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	applyErr := func(r *Runtime, rel *env.Release, want string) {
		t.Helper()
		err := r.Deploy(ctx, rel)
		var se *env.StepError
		if !errors.As(err, &se) || se.Step != "apply" || !strings.Contains(se.Err.Error(), want) {
			t.Fatalf("Deploy of %s = %v; want an apply StepError saying %q", rel.Key, err, want)
		}
	}

	// A team's namespace, named like a branch.
	team := uniqueKey("team")
	if _, err := f.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team,
		Labels: map[string]string{"owner": "payments"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.cleanup(team)
	r := f.runtime(Options{Namespace: "{{.Key}}"})
	applyErr(r, release(team, sha('1')), "not made by previewd")
	n, _ := f.cs.CoreV1().Namespaces().Get(ctx, team, metav1.GetOptions{})
	if n.Labels[LabelEnv] != "" || n.Labels[LabelManagedBy] != "" {
		t.Errorf("the team's namespace was labelled: %v", n.Labels)
	}
	its, _ := f.store.Items(ctx, team)
	if err := r.Delete(ctx, team, its); err != nil {
		t.Fatal(err)
	}
	if n, err := f.cs.CoreV1().Namespaces().Get(ctx, team, metav1.GetOptions{}); err != nil || n.DeletionTimestamp != nil {
		t.Fatalf("teardown deleted the team's namespace: %v", err)
	}

	// Two environments on one namespace: the second one is refused.
	shared := uniqueKey("shared")
	f.cleanup(shared)
	f.markAvailable(shared)
	r = f.runtime(Options{Namespace: shared})
	a, b := uniqueKey("a"), uniqueKey("b")
	if err := r.Deploy(ctx, release(a, sha('2'))); err != nil {
		t.Fatal(err)
	}
	applyErr(r, release(b, sha('2')), "environment "+a+"'s")

	// A preview on production's namespace is refused even before
	// production exists.
	prod := uniqueKey("prod")
	f.cleanup(prod)
	r = f.runtime(Options{Namespace: prod, ProductionNamespace: prod})
	applyErr(r, release(uniqueKey("c"), sha('3')), "production's")
	if _, err := f.cs.CoreV1().Namespaces().Get(ctx, prod, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("production's namespace was made by a preview: %v", err)
	}
}

// TestMigrateJobTemplateWithoutSHA: a Job template whose name does not
// carry the SHA still gets a fresh Job, in the new image, for each SHA.
func TestMigrateJobTemplateWithoutSHA(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := uniqueKey("jobname")
	ns := "preview-" + key
	f.cleanup(ns)
	job := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(job, []byte(`apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: {{.Image | quote}}
        envFrom: [{secretRef: {name: {{.SecretName}}}}]
`), 0o644)
	r := f.runtime(Options{MigrateJob: job})
	for _, c := range []byte{'5', '6'} {
		rel := release(key, sha(c))
		f.finishJob(ns, "migrate", true)
		if err := r.Migrate(ctx, rel); err != nil {
			t.Fatal(err)
		}
		j, err := f.cs.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := j.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/shop:"+rel.SHA || j.Labels[LabelMigrate] != env.ShortSHA(rel.SHA) {
			t.Fatalf("SHA %s migrated by the Job of %s (image %s)", env.ShortSHA(rel.SHA), j.Labels[LabelMigrate], img)
		}
	}
}
