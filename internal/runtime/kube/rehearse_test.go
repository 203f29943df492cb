package kube

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/previewd/previewd/internal/env"
)

func TestRehearsalJob(t *testing.T) {
	long := strings.Repeat("m", 60)
	tests := map[string]struct {
		name      string
		generated bool
		pod       string // the pod template's spec, YAML
		want      string // the Job's name; empty: refused
		refs      []string
	}{
		"generated": {"previewd-migrate-abc1234", true,
			`{containers: [{name: migrate, envFrom: [{secretRef: {name: previewd-env-rehearsal}}]}]}`,
			"previewd-rehearse-abc1234", nil},
		"a template's": {"tmpl-migrate-abc1234", false,
			`{containers: [{name: migrate, envFrom: [{secretRef: {name: previewd-env-rehearsal}}]}]}`,
			"tmpl-migrate-abc1234-rehearsal", nil},
		"a long name keeps the suffix": {long, false,
			`{containers: [{name: migrate, envFrom: [{secretRef: {name: previewd-env-rehearsal}}]}]}`,
			strings.Repeat("m", 53) + "-rehearsal", nil},
		"the environment's Secret named literally": {"t", false,
			`{containers: [{name: migrate, envFrom: [{secretRef: {name: previewd-env}}], env: [{name: DATABASE_URL, valueFrom: {secretKeyRef: {name: previewd-env, key: DATABASE_URL}}}]}],
			  initContainers: [{name: wait, envFrom: [{secretRef: {name: other}}]}],
			  volumes: [{name: v, secret: {secretName: previewd-env}}, {name: p, projected: {sources: [{secret: {name: previewd-env}}]}}]}`,
			"t-rehearsal", []string{
				"containers.0.envFrom.0.secretRef.name", "containers.0.env.0.valueFrom.secretKeyRef.name",
				"volumes.0.secret.secretName", "volumes.1.projected.sources.0.secret.name",
			}},
		"reading nothing of it": {"t", false,
			`{containers: [{name: migrate, envFrom: [{secretRef: {name: other}}]}]}`, "", nil},
		"no pod template": {"t", false, "", "", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			job := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "batch/v1", "kind": "Job"}}
			job.SetName(tc.name)
			job.SetLabels(map[string]string{LabelMigrate: "abc1234", "team": "shop"})
			job.SetAnnotations(map[string]string{AnnotationMigrateHash: "h"})
			if tc.pod != "" {
				var pod map[string]any
				if err := yaml.Unmarshal([]byte(tc.pod), &pod); err != nil {
					t.Fatal(err)
				}
				unstructured.SetNestedField(job.Object, pod, "spec", "template", "spec")
			}
			err := rehearsalJob(job, "abc1234", tc.generated)
			if tc.want == "" {
				if !errors.Is(err, env.ErrNotRehearsable) {
					t.Fatalf("rehearsalJob = %v; want a refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if job.GetName() != tc.want || len(job.GetName()) > 63 {
				t.Errorf("name = %q; want %q", job.GetName(), tc.want)
			}
			l := job.GetLabels()
			if _, ok := l[LabelMigrate]; ok || l[LabelRehearse] != "abc1234" || l["team"] != "shop" {
				t.Errorf("labels = %v; want %s and not %s", l, LabelRehearse, LabelMigrate)
			}
			if _, ok := job.GetAnnotations()[AnnotationMigrateHash]; ok {
				t.Error("a rehearsal's Job carries the migration hash")
			}
			pod, _, _ := unstructured.NestedMap(job.Object, "spec", "template", "spec")
			for _, ref := range tc.refs {
				if got := lookup(pod, ref); got != RehearsalSecretName {
					t.Errorf("%s = %v; want %s", ref, got, RehearsalSecretName)
				}
			}
			if got := lookup(pod, "initContainers.0.envFrom.0.secretRef.name"); tc.refs != nil && got != "other" {
				t.Errorf("another Secret was rewritten: %v", got)
			}
		})
	}
}

// lookup follows a dotted path of map keys and list indexes.
func lookup(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		switch c := v.(type) {
		case map[string]any:
			v = c[p]
		case []any:
			i := int(p[0] - '0')
			if i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

// rehearsalOf is the release the reconciler's rehearsal migrates: rel
// with its DATABASE_URL pointing at the copy.
func rehearsalOf(rel *env.Release) *env.Release {
	rr := *rel
	rr.Rehearsal = true
	rr.Vars = maps.Clone(rel.Vars)
	rr.Vars["DATABASE_URL"] = "postgres://u:p@db:5432/preview_" + rel.Key + "$rehearsal"
	return &rr
}

// seen is what a rehearsal's Job saw while it ran.
type seen struct {
	uid, secretRef, rehearseLabel string
	migrateLabel                  bool
	rehearsalURL, envURL          string
	envErr                        error
}

// TestMigrateRehearsal: a rehearsal's Migrate makes its own Secret and
// Job, and removes them; the environment's Secret only ever holds the
// real variables, and the real Migrate after it runs its own Job.
func TestMigrateRehearsal(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := uniqueKey("rehearse")
	ns := "preview-" + key
	f.cleanup(ns)
	f.markAvailable(ns)
	r := f.runtime(Options{MigrateCommand: []string{"./app", "migrate"}, MigrateTimeout: 20 * time.Second})

	envURL := func() string {
		t.Helper()
		s, err := f.cs.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["DATABASE_URL"])
	}
	gone := func(what string, err error) {
		t.Helper()
		if !apierrors.IsNotFound(err) {
			t.Errorf("the rehearsal's %s is still there (%v)", what, err)
		}
	}
	// rehearse runs a rehearsal whose Job finishes ok, and returns what
	// it saw and Migrate's error.
	rehearse := func(rel *env.Release, ok bool) (seen, error) {
		t.Helper()
		name := "previewd-rehearse-" + env.ShortSHA(rel.SHA)
		saw := make(chan seen, 1)
		f.finishJobSeeing(ns, name, ok, func(j *batchv1.Job) {
			s := seen{uid: string(j.UID), rehearseLabel: j.Labels[LabelRehearse]}
			_, s.migrateLabel = j.Labels[LabelMigrate]
			if ef := j.Spec.Template.Spec.Containers[0].EnvFrom; len(ef) == 1 && ef[0].SecretRef != nil {
				s.secretRef = ef[0].SecretRef.Name
			}
			if sec, err := f.cs.CoreV1().Secrets(ns).Get(ctx, RehearsalSecretName, metav1.GetOptions{}); err == nil {
				s.rehearsalURL = string(sec.Data["DATABASE_URL"])
			}
			sec, err := f.cs.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{})
			if err == nil {
				s.envURL = string(sec.Data["DATABASE_URL"])
			}
			s.envErr = err
			saw <- s
		})
		err := r.Migrate(ctx, rehearsalOf(rel))
		var s seen
		select {
		case s = <-saw:
		default:
			t.Fatalf("the rehearsal's Job %s never ran (Migrate: %v)", name, err)
		}
		_, jerr := f.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		gone("job", jerr)
		_, serr := f.cs.CoreV1().Secrets(ns).Get(ctx, RehearsalSecretName, metav1.GetOptions{})
		gone("secret", serr)
		its := f.items(key)
		for _, id := range []string{"Secret/" + ns + "/" + RehearsalSecretName, "Job.batch/" + ns + "/" + name} {
			if _, ok := its[id]; ok {
				t.Errorf("the inventory still holds %s", id)
			}
		}
		if got := envURL(); got != rel.Vars["DATABASE_URL"] {
			t.Errorf("after the rehearsal the environment's DATABASE_URL is %q; want %q", got, rel.Vars["DATABASE_URL"])
		}
		return s, err
	}
	check := func(s seen, rel *env.Release) {
		t.Helper()
		if s.secretRef != RehearsalSecretName || s.rehearseLabel != env.ShortSHA(rel.SHA) || s.migrateLabel {
			t.Errorf("the rehearsal's Job reads %q, labelled rehearse=%q migrate=%v; want %s, %s, none", s.secretRef, s.rehearseLabel, s.migrateLabel, RehearsalSecretName, env.ShortSHA(rel.SHA))
		}
		if want := rehearsalOf(rel).Vars["DATABASE_URL"]; s.rehearsalURL != want {
			t.Errorf("the rehearsal's Secret holds %q; want %q", s.rehearsalURL, want)
		}
		if s.envErr != nil || s.envURL != rel.Vars["DATABASE_URL"] {
			t.Errorf("while the rehearsal ran the environment's DATABASE_URL was %q (%v); want %q", s.envURL, s.envErr, rel.Vars["DATABASE_URL"])
		}
	}

	// The environment runs its first commit.
	rel1 := release(key, sha('a'))
	f.finishJob(ns, "previewd-migrate-"+env.ShortSHA(rel1.SHA), true)
	if err := r.Migrate(ctx, rel1); err != nil {
		t.Fatal(err)
	}

	// The next commit: rehearsal, then the real migration.
	rel2 := release(key, sha('b'))
	s, err := rehearse(rel2, true)
	if err != nil {
		t.Fatalf("rehearsal: %v", err)
	}
	check(s, rel2)
	real2 := "previewd-migrate-" + env.ShortSHA(rel2.SHA)
	if _, err := f.cs.BatchV1().Jobs(ns).Get(ctx, real2, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the rehearsal made the real migration's Job %s (%v)", real2, err)
	}
	var realRef string
	f.finishJobSeeing(ns, real2, true, func(j *batchv1.Job) { realRef = j.Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name })
	if err := r.Migrate(ctx, rel2); err != nil {
		t.Fatal(err)
	}
	j, err := f.cs.BatchV1().Jobs(ns).Get(ctx, real2, metav1.GetOptions{})
	if err != nil || !jobCondition(j, batchv1.JobComplete) || realRef != SecretName {
		t.Fatalf("the real migration's Job: %v (reading %q); want it complete, reading %s", err, realRef, SecretName)
	}
	if string(j.UID) == s.uid {
		t.Error("the real migration is the rehearsal's Job")
	}
	if got := envURL(); got != rel2.Vars["DATABASE_URL"] {
		t.Errorf("after the migration the environment's DATABASE_URL is %q", got)
	}
	// The apply keeps the real migration's Job, and no rehearsal's.
	if err := r.Deploy(ctx, rel2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.BatchV1().Jobs(ns).Get(ctx, real2, metav1.GetOptions{}); err != nil {
		t.Errorf("the real migration's Job was pruned: %v", err)
	}

	// A failing rehearsal is the rehearse step's error, with the log's
	// tail, and is cleaned up just the same.
	rel3 := release(key, sha('c'))
	_, err = rehearse(rel3, false)
	var se *env.StepError
	if !errors.As(err, &se) || se.Step != "migrate" || !strings.Contains(se.Error(), "BackoffLimitExceeded") || se.Tail == "" {
		t.Fatalf("failing rehearsal: %v; want a rehearse StepError with a tail", err)
	}

	// A rehearsal's Job left complete (previewd stopped before removing
	// it) is never taken as done: the rehearsal runs afresh.
	left := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "previewd-rehearse-" + env.ShortSHA(rel3.SHA), Namespace: ns,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: key, LabelRehearse: env.ShortSHA(rel3.SHA)}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "migrate", Image: "old"}}}}},
	}
	lj, err := f.cs.BatchV1().Jobs(ns).Create(ctx, left, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.finishJob(ns, lj.Name, true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		lj, err = f.cs.BatchV1().Jobs(ns).Get(ctx, lj.Name, metav1.GetOptions{})
		if err == nil && jobCondition(lj, batchv1.JobComplete) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the left Job never completed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s, err = rehearse(rel3, true)
	if err != nil {
		t.Fatal(err)
	}
	check(s, rel3)
	if s.uid == string(lj.UID) {
		t.Error("the rehearsal took the left complete Job as done")
	}
}

// TestMigrateRehearsalJobTemplate: a Job template's rehearsal is its Job
// with "-rehearsal", reading the rehearsal's Secret even where the
// template names the environment's literally; a template that reads
// nothing of it is refused, never run against whatever it reads.
func TestMigrateRehearsalJobTemplate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	job := `apiVersion: batch/v1
kind: Job
metadata:
  name: "tmpl-migrate-{{.ShortSHA}}"
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: "{{.Image}}"
        command: [./app, migrate]
        envFrom: [{secretRef: {name: previewd-env}}]
        env:
        - name: URL
          valueFrom: {secretKeyRef: {name: "{{.SecretName}}", key: DATABASE_URL}}
`
	r := f.runtime(Options{MigrateJob: write("job.yaml", job), MigrateTimeout: 20 * time.Second})
	key := uniqueKey("rtmpl")
	ns := "preview-" + key
	f.cleanup(ns)
	rel := release(key, sha('d'))
	name := "tmpl-migrate-" + env.ShortSHA(rel.SHA) + "-rehearsal"
	refs := make(chan []string, 1)
	f.finishJobSeeing(ns, name, true, func(j *batchv1.Job) {
		c := j.Spec.Template.Spec.Containers[0]
		refs <- []string{c.EnvFrom[0].SecretRef.Name, c.Env[0].ValueFrom.SecretKeyRef.Name}
	})
	if err := r.Migrate(ctx, rehearsalOf(rel)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-refs:
		if got[0] != RehearsalSecretName || got[1] != RehearsalSecretName {
			t.Errorf("the rehearsal's Job reads %q; want %s only", got, RehearsalSecretName)
		}
	default:
		t.Fatal("the rehearsal's Job never ran")
	}
	if _, err := f.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the rehearsal's Job is still there (%v)", err)
	}
	if _, err := f.cs.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the rehearsal wrote the environment's Secret (%v)", err)
	}

	// A template that reads nothing of previewd's Secret.
	other := strings.ReplaceAll(strings.ReplaceAll(job, "previewd-env", "team-db"), `"{{.SecretName}}"`, "team-db")
	r = f.runtime(Options{MigrateJob: write("other.yaml", other), MigrateTimeout: 20 * time.Second})
	err := r.Migrate(ctx, rehearsalOf(rel))
	var se *env.StepError
	if !errors.As(err, &se) || se.Step != "migrate" || !strings.Contains(se.Error(), "cannot be pointed at the rehearsal") || !errors.Is(err, env.ErrNotRehearsable) {
		t.Fatalf("Migrate = %v; want a refusal", err)
	}
	if js, err := f.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{}); err != nil || len(js.Items) > 0 {
		t.Errorf("a refused rehearsal left jobs: %v, %v", js, err)
	}
}
