package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/previewd/previewd/internal/runtime"
)

// Usage returns, for each environment of this instance with a pod
// running, what its running pods reserve: the sum of their CPU and memory
// requests (a Kubernetes preview is priced by what it holds of the
// cluster, not by what it burns). Instance changes whenever the set of
// running pods does. It makes two requests whatever the number of
// environments: the instance's namespaces, and the running pods that
// carry previewd's environment label.
func (r *Runtime) Usage(ctx context.Context) (map[string]runtime.Sample, error) {
	nss, err := r.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: r.selector(labels.Set{LabelManagedBy: ManagedBy})})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	keyOf := make(map[string]string, len(nss.Items))
	for _, ns := range nss.Items {
		if k := ns.Labels[LabelEnv]; k != "" {
			keyOf[ns.Name] = k
		}
	}
	pods, err := r.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		LabelSelector: LabelEnv,
		FieldSelector: "status.phase=" + string(corev1.PodRunning),
	})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	return usage(pods.Items, keyOf), nil
}

// usage sums the requests of the running pods in the environments'
// namespaces (keyOf: namespace -> key).
func usage(pods []corev1.Pod, keyOf map[string]string) map[string]runtime.Sample {
	out := map[string]runtime.Sample{}
	uids := map[string][]string{}
	for i := range pods {
		p := &pods[i]
		key, ok := keyOf[p.Namespace]
		if !ok || p.Status.Phase != corev1.PodRunning {
			continue
		}
		cpu, mem := podRequests(p)
		s := out[key]
		s.CPUCores += float64(cpu) / 1000
		s.MemoryBytes += mem
		out[key] = s
		uids[key] = append(uids[key], string(p.UID))
	}
	for key, ids := range uids {
		sort.Strings(ids)
		h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
		s := out[key]
		s.Instance = hex.EncodeToString(h[:8])
		out[key] = s
	}
	return out
}

// podRequests returns a pod's effective CPU (millicores) and memory
// (bytes) requests, as the scheduler reckons them: the pod-level
// resources when set; else the larger of the containers' sum (with the
// sidecars) and each init container's own need (with the sidecars started
// before it); plus the pod's overhead.
func podRequests(p *corev1.Pod) (milliCPU, mem int64) {
	if p.Spec.Resources != nil && len(p.Spec.Resources.Requests) > 0 {
		rq := p.Spec.Resources.Requests
		milliCPU, mem = rq.Cpu().MilliValue(), rq.Memory().Value()
	} else {
		var sumCPU, sumMem, sideCPU, sideMem, initCPU, initMem int64
		for _, c := range p.Spec.Containers {
			sumCPU += c.Resources.Requests.Cpu().MilliValue()
			sumMem += c.Resources.Requests.Memory().Value()
		}
		for _, c := range p.Spec.InitContainers {
			cpu, m := c.Resources.Requests.Cpu().MilliValue(), c.Resources.Requests.Memory().Value()
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				sideCPU += cpu
				sideMem += m
				cpu, m = sideCPU, sideMem
			} else {
				cpu, m = sideCPU+cpu, sideMem+m
			}
			initCPU, initMem = max(initCPU, cpu), max(initMem, m)
		}
		milliCPU, mem = max(sumCPU+sideCPU, initCPU), max(sumMem+sideMem, initMem)
	}
	milliCPU += p.Spec.Overhead.Cpu().MilliValue()
	mem += p.Spec.Overhead.Memory().Value()
	return milliCPU, mem
}
