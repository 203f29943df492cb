package kube

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/reconcile"
)

// TestWaitForImage checks the image against an in-process registry that
// wants the credentials of a cluster pull secret.
func TestWaitForImage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "puller" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	secretNS := uniqueKey("pull")
	f.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: secretNS}}, metav1.CreateOptions{})
	f.cleanup(secretNS)
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte("puller:s3cret")),
	}}})
	_, err := f.cs.CoreV1().Secrets(secretNS).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	r := f.runtime(Options{Image: host + "/acme/shop:{{.SHA}}", WaitForImage: true, PullSecrets: []string{secretNS + "/regcred"}})
	rel := release(uniqueKey("img"), sha('9'))
	err = r.Prepare(ctx, rel)
	var we *env.WaitError
	if !errors.As(err, &we) || !strings.Contains(we.Reason, "waiting for image "+host+"/acme/shop:"+sha('9')) {
		t.Fatalf("Prepare before the push = %v; want waiting for image", err)
	}

	// Through the reconciler, the environment is pending with that reason.
	src := &source{}
	rec := reconcile.New(reconcile.Options{Store: f.store, Source: src, Database: database.None{}, Runtime: r,
		URL: func(k string) string { return "https://" + k + ".preview.example.com" }})
	src.set(rel.Source)
	if err := rec.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Reconcile(ctx, rel.Key); err != nil {
		t.Fatal(err)
	}
	if e, _ := f.store.Get(ctx, rel.Key); e.Status != env.StatusPending || !strings.HasPrefix(e.Message, "waiting for image ") {
		t.Errorf("environment = %s %q; want pending, waiting for image", e.Status, e.Message)
	}

	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/acme/shop:" + sha('9'))
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "puller", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatalf("Prepare after the push = %v", err)
	}

	// Without the pull secret the registry refuses: that is an error to
	// retry, not a missing image.
	r2 := f.runtime(Options{Image: host + "/acme/shop:{{.SHA}}", WaitForImage: true})
	if err := r2.Prepare(ctx, rel); err == nil || errors.As(err, &we) {
		t.Errorf("Prepare without credentials = %v; want an error", err)
	}
}
