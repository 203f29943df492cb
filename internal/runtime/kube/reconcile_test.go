package kube

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/database/sqlite"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/reconcile"
)

// source is the forge: the changes that should have environments.
type source struct {
	mu   sync.Mutex
	srcs []env.Source
}

func (s *source) List(context.Context) ([]env.Source, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]env.Source(nil), s.srcs...), nil
}

func (s *source) set(srcs ...env.Source) {
	s.mu.Lock()
	s.srcs = srcs
	s.mu.Unlock()
}

// TestPullRequestLifecycle drives the reconciler with the kubernetes
// runtime: a pull request gets its namespace, app, Secret and database;
// closing it removes the namespace, then the database.
func TestPullRequestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dbDir := t.TempDir()
	db, err := sqlite.New(dbDir, "")
	if err != nil {
		t.Fatal(err)
	}
	n := 7000 + int(time.Now().UnixNano()%1000)
	key := env.PullRequestKey(n)
	ns := "preview-" + key
	f.cleanup(ns)
	f.markAvailable(ns)
	rt := f.runtime(Options{})
	src := &source{}
	rec := reconcile.New(reconcile.Options{
		Store: f.store, Source: src, Database: db, Runtime: rt,
		URL: func(k string) string { return "https://" + k + ".preview.example.com" },
	})
	pr := env.Source{Key: key, Kind: env.KindPullRequest, Number: n, Branch: "feature/login", SHA: sha('7'), Title: "Login"}
	src.set(pr)
	if err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	e, err := f.store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != env.StatusReady || e.URL != "https://"+key+".preview.example.com" {
		t.Fatalf("environment = %s %q %q", e.Status, e.Message, e.URL)
	}
	sec, err := f.cs.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dbPath := string(sec.Data["DATABASE_PATH"])
	if dbPath == "" || string(sec.Data["PREVIEW_NUMBER"]) == "" {
		t.Fatalf("secret lacks the database's or the PR's variables: %v", keys(sec.Data))
	}
	if _, err := os.Stat(dbPath); err != nil {
		t.Fatalf("database: %v", err)
	}
	d, err := f.cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example.com/shop:"+sha('7') {
		t.Errorf("image = %q", img)
	}
	// Reconciling again changes nothing.
	if _, err := rec.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}

	// Closing the pull request removes the namespace, then the database.
	src.set()
	if err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace after close: %v", err)
	}
	if _, err := os.Stat(dbPath); !os.IsNotExist(err) {
		t.Errorf("database after close: %v", err)
	}
	if items, _ := f.store.Items(ctx, key); len(items) != 0 {
		t.Errorf("inventory after close: %v", items)
	}
	if live, _ := f.store.Live(ctx); len(live) != 0 {
		t.Errorf("live after close: %v", live)
	}
}
