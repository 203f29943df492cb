package kube

import (
	"context"
	"errors"
	"fmt"
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

// migrateJob returns the migration Job of a release: the Job template
// tm, or one running MigrateCommand in the release's image with the
// environment's Secret as its environment. It returns nil when migrations
// are not configured.
func (r *Runtime) migrateJob(tm *template.Template, d Data) (*unstructured.Unstructured, error) {
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
	case len(r.o.MigrateCommand) > 0:
		if d.Image == "" {
			return nil, errors.New("running migrations needs runtime.kubernetes.image")
		}
		cmd := make([]any, len(r.o.MigrateCommand))
		for i, c := range r.o.MigrateCommand {
			cmd[i] = c
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
							"command": cmd,
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
	return job, nil
}

// migrateRef is the migration Job of d, to keep when pruning.
func (r *Runtime) migrateRef(tm *template.Template, d Data) *objRef {
	job, err := r.migrateJob(tm, d)
	if err != nil || job == nil {
		return nil
	}
	ref := refOf(job)
	return &ref
}

// Migrate runs the release's migration Job, after applying the namespace
// and the Secret it reads, and waits for it. A Job that already completed
// for this SHA is not run again; a failed one is replaced (a redeploy), and
// so is one of another SHA under the same name (a Job template whose name
// does not carry the SHA): each SHA gets a fresh Job in its own image.
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
	job, err := r.migrateJob(tm, d)
	if err != nil {
		return &env.StepError{Step: "migrate", Err: err}
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
	case cur.Labels[LabelMigrate] != d.ShortSHA:
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
