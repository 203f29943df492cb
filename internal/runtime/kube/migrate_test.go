package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/env"
)

// finishJob plays the job controller: once the Job exists, it is marked
// complete (ok) or failed.
func (f *fixture) finishJob(ns, name string, ok bool) { f.finishJobSeeing(ns, name, ok, nil) }

// finishJobSeeing is finishJob that first calls see (when set) with the
// Job about to be finished, from its goroutine.
func (f *fixture) finishJobSeeing(ns, name string, ok bool, see func(*batchv1.Job)) {
	ctx := context.Background()
	go func() {
		for i := 0; i < 200; i++ {
			j, err := f.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil || j.DeletionTimestamp != nil || len(j.Status.Conditions) > 0 {
				// Not there yet, or a previous run's Job.
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if see != nil {
				see(j)
				see = nil
			}
			now := metav1.Now()
			j.Status.StartTime = &now
			if ok {
				j.Status.Succeeded = 1
				j.Status.CompletionTime = &now
				j.Status.Conditions = []batchv1.JobCondition{
					{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
					{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
				}
			} else {
				j.Status.Failed = 1
				j.Status.Conditions = []batchv1.JobCondition{
					{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now, LastProbeTime: now},
					{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now, LastProbeTime: now},
				}
			}
			if _, err := f.cs.BatchV1().Jobs(ns).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
				continue // modified meanwhile: read it again
			}
			return
		}
	}()
}

func TestMigrateJob(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := uniqueKey("migrate")
	ns := "preview-" + key
	f.cleanup(ns)
	f.markAvailable(ns)
	r := f.runtime(Options{MigrateCommand: []string{"./app", "migrate"}, MigrateTimeout: 20 * time.Second})

	// A failed Job fails the environment, with what there is of its log.
	rel := release(key, sha('3'))
	job := "previewd-migrate-" + env.ShortSHA(rel.SHA)
	f.finishJob(ns, job, false)
	err := r.Migrate(ctx, rel)
	var se *env.StepError
	if !errors.As(err, &se) || se.Step != "migrate" || !strings.Contains(se.Error(), "BackoffLimitExceeded") {
		t.Fatalf("Migrate = %v; want a migrate StepError", err)
	}
	if se.Tail == "" {
		t.Error("no tail, not even why there is no log")
	}
	t.Logf("%v\n%s", se, se.Tail)

	// Redeploying the same SHA runs the Job again; it completes.
	f.finishJob(ns, job, true)
	if err := r.Migrate(ctx, rel); err != nil {
		t.Fatal(err)
	}
	j, err := f.cs.BatchV1().Jobs(ns).Get(ctx, job, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := j.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example.com/shop:"+rel.SHA || c.EnvFrom[0].SecretRef.Name != SecretName || strings.Join(c.Command, " ") != "./app migrate" {
		t.Errorf("job container = %+v", c)
	}
	// Once done, it is not run again, and the apply keeps it.
	if err := r.Migrate(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.BatchV1().Jobs(ns).Get(ctx, job, metav1.GetOptions{}); err != nil {
		t.Errorf("the current migration job was pruned: %v", err)
	}

	// The next SHA's apply prunes the previous SHA's Job.
	rel2 := release(key, sha('4'))
	f.finishJob(ns, "previewd-migrate-"+env.ShortSHA(rel2.SHA), true)
	if err := r.Migrate(ctx, rel2); err != nil {
		t.Fatal(err)
	}
	if err := r.Deploy(ctx, rel2); err != nil {
		t.Fatal(err)
	}
	old, err := f.cs.BatchV1().Jobs(ns).Get(ctx, job, metav1.GetOptions{})
	if err == nil && old.DeletionTimestamp == nil {
		t.Error("the previous SHA's migration job was not pruned")
	}
}
