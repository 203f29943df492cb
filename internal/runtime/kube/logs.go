package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/runtime"
)

// Logs returns the last n lines (all of them when n <= 0) of each
// container of the environment's pods: the newest pod of its latest
// migration Job, then the newest pod of each of its Deployments, each
// under a header line. It wraps runtime.ErrNoLogs, with the reason, when
// the environment has no namespace or no pods, or when no pod's log can be
// read (a pod that no node runs yet has none); a log that cannot be read
// beside others that can is named in its section.
func (r *Runtime) Logs(ctx context.Context, key string, n int) (string, error) {
	nss, err := r.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key)})
	if err != nil {
		return "", fmt.Errorf("listing namespaces of %s: %w", key, err)
	}
	if len(nss.Items) == 0 {
		return "", fmt.Errorf("%w: environment %s has no namespace", runtime.ErrNoLogs, key)
	}
	var srcs []logSource
	for _, ns := range nss.Items {
		s, err := r.logSources(ctx, key, ns.Name)
		if err != nil {
			return "", err
		}
		srcs = append(srcs, s...)
	}
	if len(srcs) == 0 {
		return "", fmt.Errorf("%w: environment %s has no pods", runtime.ErrNoLogs, key)
	}
	var b strings.Builder
	var errs []error
	for _, s := range srcs {
		for _, c := range s.pod.Spec.Containers {
			opts := &corev1.PodLogOptions{Container: c.Name}
			if n > 0 {
				opts.TailLines = ptr(int64(n))
			}
			fmt.Fprintf(&b, "==> %s, pod %s/%s, container %s <==\n", s.what, s.pod.Namespace, s.pod.Name, c.Name)
			var raw []byte
			var err error
			if s.pod.Spec.NodeName == "" {
				// The API server answers an empty log for a pod no node
				// runs: say so instead.
				err = fmt.Errorf("not scheduled to a node (%s)", s.pod.Status.Phase)
			} else {
				raw, err = r.cs.CoreV1().Pods(s.pod.Namespace).GetLogs(s.pod.Name, opts).DoRaw(ctx)
			}
			if err != nil {
				err = fmt.Errorf("pod %s container %s: %w", s.pod.Name, c.Name, err)
				errs = append(errs, err)
				fmt.Fprintf(&b, "(log unavailable: %v)\n", err)
				continue
			}
			b.Write(raw)
			if len(raw) > 0 && raw[len(raw)-1] != '\n' {
				b.WriteByte('\n')
			}
		}
	}
	if containers(srcs) == len(errs) {
		return "", fmt.Errorf("%w: logs unavailable: %w", runtime.ErrNoLogs, errors.Join(errs...))
	}
	return b.String(), nil
}

// logSource is a pod whose log Logs shows, and what it is.
type logSource struct {
	what string
	pod  corev1.Pod
}

func containers(srcs []logSource) int {
	n := 0
	for _, s := range srcs {
		n += len(s.pod.Spec.Containers)
	}
	return n
}

// logSources returns the pods of the environment in namespace ns whose
// logs are shown: the newest of the latest migration Job, then the newest
// of each Deployment, by name.
func (r *Runtime) logSources(ctx context.Context, key, ns string) ([]logSource, error) {
	var out []logSource
	jobs, err := r.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key) + "," + LabelMigrate})
	if err != nil {
		return nil, fmt.Errorf("listing jobs in %s: %w", ns, err)
	}
	if len(jobs.Items) > 0 {
		j := newest(jobs.Items, func(j batchv1.Job) metav1.Time { return j.CreationTimestamp })
		p, ok, err := r.newestPod(ctx, ns, batchv1.JobNameLabel+"="+j.Name)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, logSource{what: "job " + j.Name, pod: p})
		}
	}
	deps, err := r.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key)})
	if err != nil {
		return nil, fmt.Errorf("listing deployments in %s: %w", ns, err)
	}
	sort.Slice(deps.Items, func(i, j int) bool { return deps.Items[i].Name < deps.Items[j].Name })
	for _, d := range deps.Items {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() {
			continue // no pods can be told apart as this Deployment's
		}
		p, ok, err := r.newestPod(ctx, ns, sel.String())
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, logSource{what: "deployment " + d.Name, pod: p})
		}
	}
	return out, nil
}

// newestPod returns the newest pod in ns matching the label selector sel.
func (r *Runtime) newestPod(ctx context.Context, ns, sel string) (corev1.Pod, bool, error) {
	pods, err := r.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return corev1.Pod{}, false, fmt.Errorf("listing pods in %s: %w", ns, err)
	}
	if len(pods.Items) == 0 {
		return corev1.Pod{}, false, nil
	}
	return newest(pods.Items, func(p corev1.Pod) metav1.Time { return p.CreationTimestamp }), true, nil
}

// newest returns the item created last; items is not empty.
func newest[T any](items []T, created func(T) metav1.Time) T {
	best := items[0]
	for _, it := range items[1:] {
		if c, b := created(it), created(best); b.Before(&c) {
			best = it
		}
	}
	return best
}
