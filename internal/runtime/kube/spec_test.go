package kube

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/previewd/previewd/internal/env"
)

// TestManifestsFromSpec: a release whose app spec (its commit's
// .previewd.yaml) names another manifests directory is rendered from
// that directory of its commit; one without a spec keeps the options'.
func TestManifestsFromSpec(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := newGitRepo(t)
	sha := g.commit("main", map[string]string{
		"deploy/preview/a.yaml": configMap("from-options", "options"),
		"deploy/alt/a.yaml":     configMap("from-spec", "spec"),
	})
	r := f.repoRuntime(Options{})
	withSpec, without := uniqueKey("spec"), uniqueKey("nospec")
	for _, k := range []string{withSpec, without} {
		f.cleanup("preview-" + k)
	}
	for key, spec := range map[string]*env.AppSpec{withSpec: {Manifests: "deploy/alt"}, without: nil} {
		rel := repoRelease(g.source(key, "main", sha))
		rel.Spec = spec
		if err := r.Prepare(ctx, rel); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Apply(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := f.configValue("preview-"+withSpec, "from-spec"); err != nil || got != "spec" {
		t.Errorf("with a spec: from-spec = %q, %v", got, err)
	}
	if _, err := f.configValue("preview-"+withSpec, "from-options"); !apierrors.IsNotFound(err) {
		t.Errorf("with a spec: the options' manifests were applied too: %v", err)
	}
	if got, err := f.configValue("preview-"+without, "from-options"); err != nil || got != "options" {
		t.Errorf("without a spec: from-options = %q, %v", got, err)
	}
}
