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
// commit's migrate (its .previewd.yaml's) applies when the file sets it
// (spec.MigrateSet) or it differs from the config's top-level migrate,
// configMigrate: it runs as "/bin/sh -c" in the generated Job, and an
// empty one runs none. Otherwise command
// (runtime.kubernetes.migrate.command, or the config's migrate) runs. A
// Job template (job) always wins: the commit's different migrate is then
// not applied, and the warning says so.
func migrationOf(spec *env.AppSpec, configMigrate string, command []string, job bool) migration {
	own := spec != nil && (spec.MigrateSet || spec.Migrate != configMigrate)
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
// overrides is reported in rel.Warnings. A rehearsal (rel.Rehearsal) runs
// as rehearse describes, never touching the environment's Secret or
// migration Job.
func (r *Runtime) Migrate(ctx context.Context, rel *env.Release) error {
	// A rehearsal's failure is still the migrate step's (the reconciler
	// says it was the rehearsal's), as on the local runtime.
	step := "migrate"
	d, err := r.dataFor(rel)
	if err != nil {
		return &env.StepError{Step: step, Err: err}
	}
	if rel.Rehearsal {
		d.SecretName = RehearsalSecretName
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
		return &env.StepError{Step: step, Err: err}
	}
	if warning != "" && !slices.Contains(rel.Warnings, warning) {
		rel.Warnings = append(rel.Warnings, warning)
	}
	if job == nil {
		return nil
	}
	if rel.Rehearsal {
		if err := rehearsalJob(job, d.ShortSHA, !r.migration(rel).template); err != nil {
			return &env.StepError{Step: step, Err: err}
		}
		return r.rehearse(ctx, rel, d, job)
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
	return r.waitJob(ctx, d.Namespace, job.GetName(), step)
}

// rehearsalSuffix ends the name of a rehearsal's Job made from a Job
// template.
const rehearsalSuffix = "-rehearsal"

// rehearsalJob turns a migration Job rendered for a rehearsal (with
// .SecretName the rehearsal's Secret) into the rehearsal's own: the
// generated Job is named previewd-rehearse-<shortsha>, a template's keeps
// its name with "-rehearsal" (cut to 63 characters, a label value's
// limit, the suffix kept); it carries LabelRehearse instead of
// LabelMigrate. Every reference of its pod template to the environment's
// Secret (envFrom, env valueFrom, a volume), which a template may name
// literally, is pointed at the rehearsal's; a pod template that then reads
// nothing from it cannot be pointed at the copy of the database (it would
// migrate whatever it reads instead): env.ErrNotRehearsable, reported as
// not rehearsed.
func rehearsalJob(job *unstructured.Unstructured, short string, generated bool) error {
	if generated {
		job.SetName("previewd-rehearse-" + short)
	} else {
		name := job.GetName()
		if max := 63 - len(rehearsalSuffix); len(name) > max {
			name = strings.TrimRight(name[:max], "-.")
		}
		job.SetName(name + rehearsalSuffix)
	}
	l := job.GetLabels()
	delete(l, LabelMigrate)
	l[LabelRehearse] = short
	job.SetLabels(l)
	a := job.GetAnnotations()
	delete(a, AnnotationMigrateHash)
	job.SetAnnotations(a)
	pt, ok, _ := unstructured.NestedFieldNoCopy(job.Object, "spec", "template")
	if !ok || pointSecret(pt, SecretName, RehearsalSecretName) == 0 {
		return fmt.Errorf("%w: the migrate job reads nothing from the environment's Secret ({{.SecretName}})", env.ErrNotRehearsable)
	}
	return nil
}

// pointSecret replaces, in a pod template (or any part of it), the Secret
// from by to wherever a Secret is named: secretRef and secretKeyRef
// names, secret volumes and projected secret sources. It returns how many
// references to to there then are.
func pointSecret(v any, from, to string) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if ref, ok := c.(map[string]any); ok && (k == "secretRef" || k == "secretKeyRef" || k == "secret") {
				for _, f := range []string{"name", "secretName"} {
					switch ref[f] {
					case from:
						ref[f] = to
						n++
					case to:
						n++
					}
				}
			}
			n += pointSecret(c, from, to)
		}
	case []any:
		for _, c := range v {
			n += pointSecret(c, from, to)
		}
	}
	return n
}

// rehearse runs a rehearsal's Job: afresh always (an earlier one of its
// name is deleted first), with the namespace and the rehearsal's own
// Secret (RehearsalSecretName, the rehearsal's variables) applied and
// recorded in the inventory like everything else (a crash leaves them to
// teardown or Collect). Whatever the Job does, it and its Secret are then
// deleted, and leave the inventory; a failure is a StepError of step
// "migrate" with the tail of its pod's log.
func (r *Runtime) rehearse(ctx context.Context, rel *env.Release, d Data, job *unstructured.Unstructured) (err error) {
	cur, gerr := r.cs.BatchV1().Jobs(d.Namespace).Get(ctx, job.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(gerr):
	case gerr != nil:
		return fmt.Errorf("reading job %s: %w", job.GetName(), gerr)
	default:
		if err := r.deleteJob(ctx, cur); err != nil {
			return err
		}
	}
	defer func() {
		// Even when the apply failed halfway, or ctx is done.
		err = errors.Join(err, r.cleanRehearsal(context.WithoutCancel(ctx), rel.Key, d.Namespace, job.GetName()))
	}()
	if _, err := r.apply(ctx, rel, d, []*unstructured.Unstructured{job}, false); err != nil {
		return err
	}
	return r.waitJob(ctx, d.Namespace, job.GetName(), "migrate")
}

// cleanRehearsal deletes a rehearsal's Job (with its pods, waiting until
// it is gone) and Secret, and takes them out of the inventory.
func (r *Runtime) cleanRehearsal(ctx context.Context, key, ns, name string) error {
	jobRef := objRef{APIVersion: "batch/v1", Kind: "Job", Namespace: ns, Name: name}
	secRef := objRef{APIVersion: "v1", Kind: "Secret", Namespace: ns, Name: RehearsalSecretName}
	if err := r.deleteJob(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		return fmt.Errorf("deleting the rehearsal's job: %w", err)
	}
	err := r.cs.CoreV1().Secrets(ns).Delete(ctx, RehearsalSecretName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the rehearsal's secret: %w", err)
	}
	var errs []error
	for _, ref := range []objRef{jobRef, secRef} {
		if err := r.inv.DeleteItem(ctx, key, ref.item()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
func (r *Runtime) waitJob(ctx context.Context, ns, name, step string) error {
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
				return &env.StepError{Step: step, Err: fmt.Errorf("job %s: %s", name, why), Tail: r.jobLogTail(ctx, ns, name)}
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &env.StepError{Step: step, Err: fmt.Errorf("job %s did not finish in %s", name, r.o.MigrateTimeout), Tail: r.jobLogTail(ctx, ns, name)}
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
