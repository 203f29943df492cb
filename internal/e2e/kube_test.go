package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/kubetest"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestKubernetesWithPostgres is the Kubernetes issue's "done when": with
// runtime.kind kubernetes and PostgreSQL, a branch under the git forge gets
// a namespace with the example app's Deployment (image tag = head SHA),
// Service, Ingress and Secret, with its own database role and schema; a new
// commit rolls a new image; deleting the branch removes the namespace and
// then the schema and role. There is no kubelet, so this test plays the
// deployment controller and reports Deployments Available.
func TestKubernetesWithPostgres(t *testing.T) {
	cp := kubetest.Shared(t)
	pg := pgtest.Shared(t)
	ctx := context.Background()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, cp.AdminToken); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	db := pg.NewDatabase(t)
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	branch, prodNS := "kube-"+suffix, "prod-"+suffix
	ns := "preview-" + branch
	r := newRepo(t)
	// The manifests live in the app's repository, and are read at each
	// environment's commit.
	manifests := map[string]string{}
	dir := filepath.Join(moduleRoot(), "examples", "markdown-editor", "deploy", "preview")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		manifests["deploy/preview/"+e.Name()] = string(b)
	}
	r.commit("main", manifests)
	sha := r.commit(branch, map[string]string{"banner.txt": "kube"})

	kubetest.MarkAvailable(t, cs, ns, prodNS)
	yaml := fmt.Sprintf(`
dataDir: %q
domain: preview.test
forge:
  kind: git
  git: {url: %q, pollInterval: 1h, productionBranch: main}
runtime:
  kind: kubernetes
  kubernetes:
    kubeconfig: %q
    manifests: %q
    productionNamespace: %q
    image: "registry.example/markdown-editor:{{.SHA}}"
    rolloutTimeout: 60s
database:
  kind: postgres
  postgres: {adminURL: %q, appHost: %q}
`, t.TempDir(), r.bare, kubeconfig, "deploy/preview", prodNS, pg.AdminURLFor(db), pg.BouncerHostPort())
	in := start(t, yaml)
	a := in.api()
	e := a.waitStatus(branch, env.StatusReady, sha)
	role := "preview_" + strings.ReplaceAll(branch, "-", "_")
	if e.Database != role {
		t.Errorf("database = %q, want %q", e.Database, role)
	}

	image := func() string {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "markdown-editor", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers[0].Image
	}
	if got := image(); got != "registry.example/markdown-editor:"+sha {
		t.Errorf("image = %q, want tag %s", got, sha)
	}
	if _, err := cs.CoreV1().Services(ns).Get(ctx, "markdown-editor", metav1.GetOptions{}); err != nil {
		t.Errorf("service: %v", err)
	}
	// The app's Ingress, and the one that sends /.previewd/ (protected
	// previews' sign-in) to previewd, both on the preview's host.
	for _, name := range []string{"markdown-editor", "markdown-editor-previewd"} {
		ing, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(ing.Spec.Rules) == 0 || ing.Spec.Rules[0].Host != branch+".preview.test" {
			t.Errorf("ingress %s: %v %+v", name, err, ing)
		}
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "previewd-env", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := string(sec.Data["DATABASE_URL"]); !strings.Contains(u, "://"+role+":") || !strings.Contains(u, pg.BouncerHostPort()) || string(sec.Data["DATABASE_SCHEMA"]) != role || string(sec.Data["PREVIEW_SHA"]) != sha {
		t.Errorf("secret: DATABASE_URL %q DATABASE_SCHEMA %q PREVIEW_SHA %q", u, sec.Data["DATABASE_SCHEMA"], sec.Data["PREVIEW_SHA"])
	}
	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil || nsObj.Labels["app.kubernetes.io/managed-by"] != "previewd" || nsObj.Labels["previewd.dev/env"] != branch {
		t.Errorf("namespace labels: %v %v", err, nsObj.Labels)
	}
	roleExists := func() bool {
		conn, err := pg.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var ok bool
		conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, role).Scan(&ok)
		return ok
	}
	if !roleExists() {
		t.Fatalf("role and schema %s do not exist", role)
	}

	// A new commit is a new image tag, never a reused one; it adds an
	// object to its manifests, which is applied.
	extra := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  SHA: {{.SHA | quote}}\n"
	sha2 := r.commit(branch, map[string]string{"banner.txt": "kube 2", "deploy/preview/extra.yaml": extra})
	in.sync()
	a.waitStatus(branch, env.StatusReady, sha2)
	if got := image(); got != "registry.example/markdown-editor:"+sha2 {
		t.Errorf("after a new commit, image = %q", got)
	}
	if cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "extra", metav1.GetOptions{}); err != nil || cm.Data["SHA"] != sha2 {
		t.Errorf("the object the commit added: %v %v", err, cm)
	}
	// The next commit takes it out of the templates: it is pruned.
	sha3 := r.commit(branch, map[string]string{"deploy/preview/extra.yaml": ""})
	in.sync()
	a.waitStatus(branch, env.StatusReady, sha3)
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "extra", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the object that left the templates is not pruned: %v", err)
	}

	// Deleting the branch removes the namespace (really gone), then the
	// database.
	r.deleteBranch(branch)
	in.sync()
	a.waitGone(branch)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s still exists: %v", ns, err)
	}
	if roleExists() {
		t.Errorf("role or schema %s survived", role)
	}
}
