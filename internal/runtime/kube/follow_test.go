package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
)

// opened records the log streams a follow opens, and answers each with
// one line naming it (the testbed has no kubelet to ask).
type opened struct {
	mu   sync.Mutex
	seen []string // "pod/container tail=N|all"
}

func (o *opened) open(ctx context.Context, pod *corev1.Pod, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	tail := "all"
	if opts.TailLines != nil {
		tail = fmt.Sprint(*opts.TailLines)
	}
	if !opts.Follow || !opts.Timestamps {
		return nil, fmt.Errorf("options %+v: want Follow and Timestamps", opts)
	}
	o.mu.Lock()
	o.seen = append(o.seen, pod.Name+"/"+opts.Container+" tail="+tail)
	o.mu.Unlock()
	return io.NopCloser(strings.NewReader("2026-01-02T03:04:05.5Z hello from " + pod.Name + "/" + opts.Container + "\n")), nil
}

func (o *opened) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := append([]string(nil), o.seen...)
	sort.Strings(s)
	return s
}

// TestFollow against the real API server: the pods followed are those of
// the environment's Deployments and of its migration Job (not another
// pod carrying its label), each container that runs or ran, from its
// last n lines; a pod that appears later, a container that starts later
// or restarts, and the next migration's pod are picked up with all their
// output; lines are tagged with pod/container or migrate; no namespace
// or no pods wraps ErrNoLogs; the follow ends with ctx.
func TestFollow(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	r := f.runtime(Options{})
	key := uniqueKey("follow")
	ns := "preview-" + key
	f.cleanup(ns)
	lines := make(chan env.LogLine, 100)

	if err := r.Follow(ctx, key, 10, lines); !errors.Is(err, runtime.ErrNoLogs) || !strings.Contains(err.Error(), "no namespace") {
		t.Fatalf("follow without a namespace: %v", err)
	}
	f.markAvailable(ns)
	rel := release(key, sha('a'))
	if err := r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := r.Follow(ctx, key, 10, lines); !errors.Is(err, runtime.ErrNoLogs) || !strings.Contains(err.Error(), "no pods") {
		t.Fatalf("follow without pods: %v", err)
	}

	job := func(name string) {
		t.Helper()
		j := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: key, LabelMigrate: "x"}},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "migrate", Image: "app"}},
			}}},
		}
		if _, err := f.cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// pod makes a pod with its containers in the given states: "run",
	// "done", "wait" (and restarts, for "run").
	pod := func(name string, l map[string]string, states map[string]string, restarts int32) {
		t.Helper()
		l[LabelEnv] = key
		// On a node, as a pod whose containers run would be; there is
		// no such node (nor any kubelet) here.
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l}, Spec: corev1.PodSpec{NodeName: "node-that-is-gone"}}
		for _, c := range sortedKeys(states) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "app"})
		}
		cur, err := f.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if cur, err = f.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cur.Status.ContainerStatuses = nil
		for _, c := range sortedKeys(states) {
			s := corev1.ContainerStatus{Name: c, Image: "app", RestartCount: restarts}
			switch states[c] {
			case "run":
				s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.Now()}
			case "done":
				s.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0}
			default:
				s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
			}
			cur.Status.ContainerStatuses = append(cur.Status.ContainerStatuses, s)
		}
		if _, err := f.cs.CoreV1().Pods(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	web := map[string]string{"app": "web"}
	job("previewd-migrate-aaaaaaa")
	pod("web-1", map[string]string{"app": "web"}, map[string]string{"web": "run", "sidecar": "run"}, 0)
	pod("web-2", map[string]string{"app": "web"}, map[string]string{"web": "wait"}, 0)
	pod("migrate-1", map[string]string{batchv1.JobNameLabel: "previewd-migrate-aaaaaaa"}, map[string]string{"migrate": "done"}, 0)
	pod("db-0", map[string]string{"app": "db"}, map[string]string{"db": "run"}, 0) // the environment's, no Deployment's

	o := &opened{}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.follow(fctx, key, 10, lines, o.open) }()

	tags := map[string]string{}
	got := 0 // lines
	waitFor := func(want ...string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			if got := o.list(); fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
			select {
			case l := <-lines:
				if strings.HasPrefix(l.Text, "hello from ") {
					if want := time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC); !l.Time.Equal(want) {
						t.Errorf("line %q at %v, want %v", l.Text, l.Time, want)
					}
					tags[strings.TrimPrefix(l.Text, "hello from ")] = l.Step
					got++
				} else {
					t.Errorf("unexpected line %q", l.Text)
				}
			case err := <-done:
				t.Fatalf("the follow ended: %v", err)
			case <-deadline:
				t.Fatalf("streams opened %q, want %q", o.list(), want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitFor("migrate-1/migrate tail=10", "web-1/sidecar tail=10", "web-1/web tail=10")

	// Later: db-0 changes (still not followed); web-2's container starts;
	// web-1's web restarts; a new pod (a rollout) and the next
	// migration's pod appear.
	pod("db-0", map[string]string{"app": "db"}, map[string]string{"db": "run"}, 1)
	pod("web-2", map[string]string{"app": "web"}, map[string]string{"web": "run"}, 0)
	pod("web-1", map[string]string{"app": "web"}, map[string]string{"web": "run", "sidecar": "run"}, 1)
	pod("web-3", web, map[string]string{"web": "run"}, 0)
	job("previewd-migrate-bbbbbbb")
	pod("migrate-2", map[string]string{batchv1.JobNameLabel: "previewd-migrate-bbbbbbb"}, map[string]string{"migrate": "run"}, 0)
	waitFor("migrate-1/migrate tail=10", "migrate-2/migrate tail=all", "web-1/sidecar tail=10", "web-1/sidecar tail=all", "web-1/web tail=10", "web-1/web tail=all",
		"web-2/web tail=all", "web-3/web tail=all")
	// One line of each of the 8 streams.
	deadline := time.After(30 * time.Second)
	for got < 8 {
		select {
		case l := <-lines:
			tags[strings.TrimPrefix(l.Text, "hello from ")] = l.Step
			got++
		case <-deadline:
			t.Fatalf("lines of %v only", tags)
		}
	}
	want := map[string]string{"migrate-1/migrate": "migrate", "migrate-2/migrate": "migrate", "web-1/web": "web-1/web", "web-1/sidecar": "web-1/sidecar", "web-2/web": "web-2/web", "web-3/web": "web-3/web"}
	for k, step := range want {
		if tags[k] != step {
			t.Errorf("the lines of %s are tagged %q, want %q", k, tags[k], step)
		}
	}
	if _, ok := tags["db-0/db"]; ok {
		t.Error("db-0, no Deployment's pod, was followed")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the follow ended with %v, want nil once ctx is done", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follow did not end within 10s of its ctx")
	}

	// The real streams: without a kubelet (the pods' node does not
	// exist), each container's log is unavailable, and a line says why.
	fctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() { done <- r.Follow(fctx, key, 10, lines) }()
	select {
	case l := <-lines:
		t.Logf("%s: %s", l.Step, l.Text)
		if !strings.Contains(l.Text, "unavailable: ") {
			t.Errorf("a log without a kubelet: %q", l.Text)
		}
	case err := <-done:
		t.Fatalf("the follow ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no line within 30s")
	}
	cancel()
	<-done
}

func sortedKeys(m map[string]string) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func TestReadPodLog(t *testing.T) {
	long := strings.Repeat("x", 2*env.MaxLogLine)
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for name, tc := range map[string]struct {
		in   string
		want []env.LogLine
	}{
		"timestamps": {"2026-01-02T03:04:05.123456789Z hello\n2026-01-02T03:04:05.123456789Z  indented\n",
			[]env.LogLine{{Step: "s", Text: "hello", Time: at}, {Step: "s", Text: " indented", Time: at}}},
		"empty line":    {"2026-01-02T03:04:05.123456789Z \n", []env.LogLine{{Step: "s", Text: "", Time: at}}},
		"no space":      {"2026-01-02T03:04:05.123456789Z\n", []env.LogLine{{Step: "s", Text: "", Time: at}}},
		"offset":        {"2026-01-02T04:04:05.123456789+01:00 x\n", []env.LogLine{{Step: "s", Text: "x", Time: at}}},
		"no timestamp":  {"plain line\n", []env.LogLine{{Step: "s", Text: "plain line"}}},
		"not utf-8":     {"2026-01-02T03:04:05.123456789Z caf\xe9\r\n", []env.LogLine{{Step: "s", Text: "caf\uFFFD", Time: at}}},
		"last unfinish": {"2026-01-02T03:04:05.123456789Z a\n2026-01-02T03:04:05.123456789Z b", []env.LogLine{{Step: "s", Text: "a", Time: at}, {Step: "s", Text: "b", Time: at}}},
		"long": {"2026-01-02T03:04:05.123456789Z " + long + "\n",
			[]env.LogLine{{Step: "s", Text: strings.Repeat("x", env.MaxLogLine-len("2026-01-02T03:04:05.123456789Z ")-len("…")) + "…", Time: at}}},
	} {
		t.Run(name, func(t *testing.T) {
			var got []env.LogLine
			if err := readPodLog(strings.NewReader(tc.in), "s", func(l env.LogLine) error { got = append(got, l); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines %.80q, want %d", len(got), got, len(tc.want))
			}
			for i := range got {
				if got[i].Step != tc.want[i].Step || got[i].Text != tc.want[i].Text || !got[i].Time.Equal(tc.want[i].Time) {
					t.Errorf("line %d = %.60q, want %.60q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestPodStep(t *testing.T) {
	sel := func(s string) labels.Selector { l, _ := labels.Parse(s); return l }
	o := &owners{deployments: []labels.Selector{sel("app=web")}, migrations: map[string]bool{"m-old": true, "m-new": true}, latest: "m-new", rehearsals: map[string]bool{"r-1": true}}
	for name, tc := range map[string]struct {
		labels map[string]string
		start  bool
		step   string
		ok     bool
	}{
		"deployment's":             {map[string]string{"app": "web", "pod-template-hash": "x"}, true, "", true},
		"latest migration":         {map[string]string{batchv1.JobNameLabel: "m-new"}, true, "migrate", true},
		"older migration at start": {map[string]string{batchv1.JobNameLabel: "m-old"}, true, "migrate", false},
		"a migration seen later":   {map[string]string{batchv1.JobNameLabel: "m-old"}, false, "migrate", true},
		"a rehearsal at start":     {map[string]string{batchv1.JobNameLabel: "r-1"}, true, "rehearse", true},
		"a rehearsal seen later":   {map[string]string{batchv1.JobNameLabel: "r-1"}, false, "rehearse", true},
		"another job":              {map[string]string{batchv1.JobNameLabel: "backup"}, false, "", false},
		"another workload's":       {map[string]string{"app": "db"}, true, "", false},
		"no labels":                {nil, false, "", false},
	} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels}}
		step, ok := podStep(p, o, tc.start)
		if ok != tc.ok || (ok && step != tc.step) {
			t.Errorf("%s: %q, %v; want %q, %v", name, step, ok, tc.step, tc.ok)
		}
	}
	if _, ok := podStep(&corev1.Pod{}, nil, false); ok {
		t.Error("a pod of a namespace without owners is followed")
	}
	if got := containerStep("", "web-1", "app"); got != "web-1/app" {
		t.Errorf("containerStep = %q", got)
	}
	if got := containerStep("migrate", "m-1", "migrate"); got != "migrate" {
		t.Errorf("containerStep = %q", got)
	}
}
