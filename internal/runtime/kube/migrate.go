package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/tmpl"
)

// migration is how one release migrates (see migrationOf).
type migration struct {
	// template: the Job template (Options.MigrateJob) runs.
	template bool
	// command is the generated Job's container command; nil, without a
	// template, runs no migration.
	command []string
	// warning, if set, says the commit's migrate was not applied.
	warning string
}

// migrationOf decides how a release whose app spec is spec migrates. The
// commit's migrate (its .previewd.yaml's) applies when it differs from
// the config's top-level migrate, configMigrate: it runs as "/bin/sh -c"
// in the generated Job, and an empty one runs none. Otherwise command
// (runtime.kubernetes.migrate.command, or the config's migrate) runs. A
// Job template (job) always wins: the commit's different migrate is then
// not applied, and the warning says so.
func migrationOf(spec *env.AppSpec, configMigrate string, command []string, job bool) migration {
	own := spec != nil && spec.Migrate != configMigrate
	switch {
	case job && own:
		from := spec.From
		if from == "" {
			from = env.RepoFile
		}
		return migration{template: true, warning: fmt.Sprintf("warning: migrate of %s not applied: runtime.kubernetes.migrate.job runs the migrations", from)}
	case job:
		return migration{template: true}
	case own && strings.TrimSpace(spec.Migrate) == "":
		return migration{}
	case own:
		return migration{command: []string{"/bin/sh", "-c", spec.Migrate}}
	}
	return migration{command: command}
}

// migration returns how rel migrates.
func (r *Runtime) migration(rel *env.Release) migration {
	return migrationOf(rel.Spec, r.o.ConfigMigrate, r.o.MigrateCommand, r.o.MigrateJob != "")
}

// migrateJob returns the migration Job of a release: the Job template
// tm, or one running cmd in the release's image with the environment's
// Secret as its environment. It returns nil when there is neither. The
// Job carries the hash of its pod template (AnnotationMigrateHash).
func migrateJob(tm *template.Template, cmd []string, d Data) (*unstructured.Unstructured, error) {
	var job *unstructured.Unstructured
	switch {
	case tm != nil:
		text, err := tmpl.Execute(tm, d)
		if err != nil {
			return nil, fmt.Errorf("rendering migrate job: %w", err)
		}
		objs, err := decodeYAML(tm.Name(), []byte(text))
		if err != nil {
			return nil, err
		}
		if len(objs) != 1 || objs[0].GetKind() != "Job" {
			return nil, errors.New("the migrate job template must hold exactly one Job")
		}
		job = objs[0]
	case len(cmd) > 0:
		if d.Image == "" {
			return nil, errors.New("running migrations needs runtime.kubernetes.image")
		}
		c := make([]any, len(cmd))
		for i, a := range cmd {
			c[i] = a
		}
		job = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "batch/v1",
			"kind":       "Job",
			"spec": map[string]any{
				"backoffLimit": int64(0),
				"template": map[string]any{
					"spec": map[string]any{
						"restartPolicy": "Never",
						"containers": []any{map[string]any{
							"name":    "migrate",
							"image":   d.Image,
							"command": c,
							"envFrom": []any{map[string]any{"secretRef": map[string]any{"name": d.SecretName}}},
						}},
					},
				},
			},
		}}
		job.SetName("previewd-migrate-" + d.ShortSHA)
	default:
		return nil, nil
	}
	job.SetNamespace(d.Namespace)
	l := job.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[LabelMigrate] = d.ShortSHA
	job.SetLabels(l)
	h, err := podTemplateHash(job)
	if err != nil {
		return nil, err
	}
	a := job.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[AnnotationMigrateHash] = h
	job.SetAnnotations(a)
	return job, nil
}

// podTemplateHash is a short hash of a Job's pod template as previewd
// renders it (before the API server's defaults). A Job's pod template
// cannot change once made, so a Job whose hash differs must be replaced.
func podTemplateHash(job *unstructured.Unstructured) (string, error) {
	pt, _, _ := unstructured.NestedFieldNoCopy(job.Object, "spec", "template")
	b, err := json.Marshal(pt) // maps marshal with sorted keys
	if err != nil {
		return "", fmt.Errorf("hashing migrate job: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// migrateJobOf returns rel's migration Job (nil: none), with the warning
// of a commit's migrate not applied; tm is the Job template the release
// renders with.
func (r *Runtime) migrateJobOf(rel *env.Release, tm *template.Template, d Data) (*unstructured.Unstructured, string, error) {
	m := r.migration(rel)
	if !m.template {
		tm = nil
	}
	job, err := migrateJob(tm, m.command, d)
	return job, m.warning, err
}

// migrateRef is the migration Job of rel, to keep when pruning: the one
// Migrate runs.
func (r *Runtime) migrateRef(rel *env.Release, tm *template.Template, d Data) *objRef {
	job, _, err := r.migrateJobOf(rel, tm, d)
	if err != nil || job == nil {
		return nil
	}
	ref := refOf(job)
	return &ref
}

// Migrate runs the release's migration Job (see migrationOf for which),
// after applying the namespace and the Secret it reads, and waits for it.
// A Job that already completed for this SHA and pod template is not run
// again; a failed one is replaced (a redeploy), and so is one of another
// SHA under the same name (a Job template whose name does not carry the
// SHA) or of another pod template (the commit's migrate changed at the
// same SHA): each gets a fresh Job. A commit's migrate that a Job template
// overrides is reported in rel.Warnings.
func (r *Runtime) Migrate(ctx context.Context, rel *env.Release) error {
	d, err := r.dataFor(rel)
	if err != nil {
		return &env.StepError{Step: "migrate", Err: err}
	}
	var tm *template.Template
	if r.o.MigrateJob != "" {
		t, err := r.templatesFor(ctx, rel)
		if err != nil {
			return err
		}
		tm = t.migrate
	}
	job, warning, err := r.migrateJobOf(rel, tm, d)
	if err != nil {
		return &env.StepError{Step: "migrate", Err: err}
	}
	if warning != "" && !slices.Contains(rel.Warnings, warning) {
		rel.Warnings = append(rel.Warnings, warning)
	}
	if job == nil {
		return nil
	}
	jobs := r.cs.BatchV1().Jobs(d.Namespace)
	cur, err := jobs.Get(ctx, job.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading job %s: %w", job.GetName(), err)
	case cur.Labels[LabelMigrate] != d.ShortSHA || cur.Annotations[AnnotationMigrateHash] != job.GetAnnotations()[AnnotationMigrateHash]:
		if err := r.deleteJob(ctx, cur); err != nil {
			return err
		}
	case jobCondition(cur, batchv1.JobComplete):
		return nil
	case jobCondition(cur, batchv1.JobFailed):
		if err := r.deleteJob(ctx, cur); err != nil {
			return err
		}
	}
	if _, err := r.apply(ctx, rel, d, []*unstructured.Unstructured{job}, false); err != nil {
		return err
	}
	return r.waitJob(ctx, d.Namespace, job.GetName())
}

func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// deleteJob deletes a job with its pods and waits until it is gone.
func (r *Runtime) deleteJob(ctx context.Context, j *batchv1.Job) error {
	jobs := r.cs.BatchV1().Jobs(j.Namespace)
	err := jobs.Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationForeground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting job %s: %w", j.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.DeleteTimeout)
	defer cancel()
	for {
		_, err := jobs.Get(ctx, j.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("job %s still there after %s", j.Name, r.o.DeleteTimeout)
		case <-time.After(r.o.PollInterval):
		}
	}
}

// waitJob waits for the Job to complete. A failed Job fails the step with
// the tail of its pod's log (when the log can be read).
func (r *Runtime) waitJob(ctx context.Context, ns, name string) error {
	wctx, cancel := context.WithTimeout(ctx, r.o.MigrateTimeout)
	defer cancel()
	t := time.NewTicker(r.o.PollInterval)
	defer t.Stop()
	for {
		j, err := r.cs.BatchV1().Jobs(ns).Get(wctx, name, metav1.GetOptions{})
		if err != nil && !waitable(wctx, err) {
			return fmt.Errorf("reading job %s: %w", name, err)
		}
		if err == nil {
			if jobCondition(j, batchv1.JobComplete) {
				return nil
			}
			if jobCondition(j, batchv1.JobFailed) {
				why := "job failed"
				for _, c := range j.Status.Conditions {
					if c.Type == batchv1.JobFailed {
						why = strings.TrimSpace(c.Reason + ": " + c.Message)
					}
				}
				return &env.StepError{Step: "migrate", Err: fmt.Errorf("job %s: %s", name, why), Tail: r.jobLogTail(ctx, ns, name)}
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &env.StepError{Step: "migrate", Err: fmt.Errorf("job %s did not finish in %s", name, r.o.MigrateTimeout), Tail: r.jobLogTail(ctx, ns, name)}
		case <-t.C:
		}
	}
}

// jobLogTail returns the last lines of the log of the Job's newest pod, or
// a note saying why there is none.
func (r *Runtime) jobLogTail(ctx context.Context, ns, name string) string {
	p, ok, err := r.newestPod(ctx, ns, batchv1.JobNameLabel+"="+name)
	if err != nil {
		return "(pod logs unavailable: " + err.Error() + ")"
	}
	if !ok {
		return "(no pod of the job found; no log)"
	}
	b, err := r.cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptr(int64(20))}).DoRaw(ctx)
	if err != nil {
		return "(log of pod " + p.Name + " unavailable: " + err.Error() + ")"
	}
	return strings.TrimRight(string(b), "\n")
}
