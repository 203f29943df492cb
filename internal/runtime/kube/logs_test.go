package kube

import (
	"errors"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/runtime"
)

// TestLogs: the logs of an environment are its pods' logs, and when there
// are none to show the error says why and wraps runtime.ErrNoLogs (the
// server answers 404 with it). There is no kubelet here, so a pod's log
// cannot be read: that too is reported as no logs, with the API server's
// reason.
func TestLogs(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	r := f.runtime(Options{})
	key := uniqueKey("logs")
	ns := "preview-" + key
	f.cleanup(ns)

	noLogs := func(want ...string) {
		t.Helper()
		out, err := r.Logs(ctx, key, 50)
		if !errors.Is(err, runtime.ErrNoLogs) {
			t.Fatalf("Logs = %q, %v; want an error wrapping ErrNoLogs", out, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Logs error %q lacks %q", err, w)
			}
		}
	}

	noLogs("no namespace")

	f.markAvailable(ns)
	rel := release(key, sha('a'))
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	noLogs("no pods")

	// A pod of the Deployment and one of a migration Job, as their
	// controllers would make them: one not scheduled, the other on a node
	// that does not exist. Neither has a log.
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "previewd-migrate-aaaaaaa", Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: key, LabelMigrate: "aaaaaaa"}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "migrate", Image: "app"}},
		}}},
	}
	if _, err := f.cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]map[string]string{
		"web-1":     {"app": "web", LabelEnv: key},
		"migrate-1": {batchv1.JobNameLabel: job.Name, LabelEnv: key},
	} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "app"}}},
		}
		if name == "migrate-1" {
			pod.Spec.NodeName = "node-that-is-gone"
		}
		if _, err := f.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	noLogs("logs unavailable: ", "pod web-1 container c: not scheduled to a node", "pod migrate-1 container c: ")
}
