package kube

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/runtime"
)

func requests(cpu, mem string) corev1.ResourceRequirements {
	rl := corev1.ResourceList{}
	if cpu != "" {
		rl[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		rl[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return corev1.ResourceRequirements{Requests: rl}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := map[string]struct {
		spec     corev1.PodSpec
		cpu, mem int64
	}{
		"none": {corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, 0, 0},
		"containers sum": {corev1.PodSpec{Containers: []corev1.Container{
			{Name: "a", Resources: requests("250m", "64Mi")}, {Name: "b", Resources: requests("0.5", "64Mi")},
		}}, 750, 128 << 20},
		"an init container needs more": {corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "i", Resources: requests("2", "32Mi")}},
			Containers:     []corev1.Container{{Name: "a", Resources: requests("1", "128Mi")}},
		}, 2000, 128 << 20},
		"a sidecar runs beside the containers and the later init containers": {corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "proxy", RestartPolicy: &always, Resources: requests("100m", "16Mi")},
				{Name: "migrate", Resources: requests("1", "16Mi")},
			},
			Containers: []corev1.Container{{Name: "a", Resources: requests("200m", "64Mi")}},
		}, 1100, 80 << 20},
		"pod-level resources win": {corev1.PodSpec{
			Resources:  &corev1.ResourceRequirements{Requests: requests("3", "1Gi").Requests},
			Containers: []corev1.Container{{Name: "a", Resources: requests("1", "128Mi")}},
		}, 3000, 1 << 30},
		"overhead": {corev1.PodSpec{
			Overhead:   requests("50m", "10Mi").Requests,
			Containers: []corev1.Container{{Name: "a", Resources: requests("1", "100Mi")}},
		}, 1050, 110 << 20},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cpu, mem := podRequests(&corev1.Pod{Spec: tt.spec})
			if cpu != tt.cpu || mem != tt.mem {
				t.Errorf("requests = %dm %d, want %dm %d", cpu, mem, tt.cpu, tt.mem)
			}
		})
	}
}

// TestUsage: the running pods' requests are summed per environment of
// this instance; a pod not running, an environment whose pods do not run,
// and pods outside previewd's namespaces are not counted; the instance
// changes with the set of pods.
func TestUsage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	inst := uniqueKey("usage")
	rt := f.runtime(Options{Instance: inst})
	other := f.runtime(Options{Instance: inst + "-other", Namespace: "other-{{.Key}}"})
	key, idle := uniqueKey("use"), uniqueKey("idle")
	for _, k := range []string{key, idle} {
		f.cleanup("preview-" + k)
		f.markAvailable("preview-" + k)
		if _, err := rt.Apply(ctx, release(k, sha('3'))); err != nil {
			t.Fatal(err)
		}
	}
	// The other instance's environment of the same key.
	f.cleanup("other-" + key)
	if _, err := other.Apply(ctx, release(key, sha('3'))); err != nil {
		t.Fatal(err)
	}
	stray := uniqueKey("stray")
	if _, err := f.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: stray}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.cleanup(stray)

	pod := func(ns, name string, running bool, c ...corev1.Container) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{LabelEnv: key}}, Spec: corev1.PodSpec{Containers: c}}
		p, err := f.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if running {
			setRunning(p)
			if p, err = f.cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	ns := "preview-" + key
	pod(ns, "web-1", true, corev1.Container{Name: "web", Image: "x", Resources: requests("250m", "64Mi")}, corev1.Container{Name: "side", Image: "x", Resources: requests("250m", "64Mi")})
	web2 := pod(ns, "web-2", true, corev1.Container{Name: "web", Image: "x", Resources: requests("2", "128Mi")})
	pod(ns, "pending", false, corev1.Container{Name: "web", Image: "x", Resources: requests("8", "8Gi")})
	pod("preview-"+idle, "pending", false, corev1.Container{Name: "web", Image: "x", Resources: requests("1", "1Gi")})
	pod("other-"+key, "web", true, corev1.Container{Name: "web", Image: "x", Resources: requests("4", "4Gi")})
	pod(stray, "web", true, corev1.Container{Name: "web", Image: "x", Resources: requests("4", "4Gi")})

	got, err := rt.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := got[key]
	if s.CPUCores != 2.5 || s.MemoryBytes != 256<<20 || s.Instance == "" || s.CPUSeconds != 0 {
		t.Errorf("usage of %s = %+v, want 2.5 cores and 256 MiB", key, s)
	}
	if _, ok := got[idle]; ok {
		t.Errorf("an environment with no running pod is listed: %+v", got[idle])
	}
	for k := range got {
		if k != key {
			t.Errorf("usage lists %s, not of this instance or not running", k)
		}
	}

	// One pod fewer: another instance.
	if err := f.cs.CoreV1().Pods(ns).Delete(ctx, web2.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var after runtime.Sample
	// The pod has no node: it goes at once.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got, err := rt.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after = got[key]; after.CPUCores == 0.5 {
			break
		}
	}
	if after.CPUCores != 0.5 || after.MemoryBytes != 128<<20 || after.Instance == s.Instance || after.Instance == "" {
		t.Errorf("usage after a pod went = %+v (before %+v)", after, s)
	}
}
