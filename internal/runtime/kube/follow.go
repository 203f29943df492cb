package kube

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
)

var _ runtime.Follower = (*Runtime)(nil)

// openLogFunc opens the log stream of one container of a pod; the test
// seam for a testbed without a kubelet.
type openLogFunc func(ctx context.Context, pod *corev1.Pod, opts *corev1.PodLogOptions) (io.ReadCloser, error)

// Follow streams the logs of every pod of the environment's Deployments
// and of its latest migration Job (client-go, Follow with TailLines n),
// then of each such pod that appears later (a rollout, the next
// migration) or container that restarts, all of their output as they
// start, until ctx is done. A line is tagged "migrate" for a migration
// Job's pod, else "<pod>/<container>", and made safe by
// runtime.ReadLines. It wraps runtime.ErrNoLogs, with the reason, when
// the environment has no namespace or no pods.
func (r *Runtime) Follow(ctx context.Context, key string, n int, lines chan<- env.LogLine) error {
	return r.follow(ctx, key, n, lines, r.openLog)
}

func (r *Runtime) openLog(ctx context.Context, pod *corev1.Pod, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	return r.cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, opts).Stream(ctx)
}

// podEvent is a pod seen in a namespace's watch.
type podEvent struct {
	pod *corev1.Pod
	err error // the watch failed
}

// logFollow is the state of one Follow: what it knows of each namespace
// and pod, and the container instances it streams.
type logFollow struct {
	r     *Runtime
	key   string
	n     int
	lines chan<- env.LogLine
	open  openLogFunc
	wg    sync.WaitGroup

	owners   map[string]*owners   // per namespace
	pods     map[types.UID]string // followed pods: their step ("migrate", or "" for the pod/container)
	ignored  map[types.UID]bool
	streamed map[instance]bool
}

// owners are a namespace's workloads whose pods are followed.
type owners struct {
	deployments []labels.Selector
	migrations  map[string]bool // migration Job names
	latest      string          // the newest migration Job
	rehearsals  map[string]bool // migration rehearsal Job names (LabelRehearse)
}

// instance is one run of a container.
type instance struct {
	pod       types.UID
	container string
	restarts  int32
}

func (r *Runtime) follow(ctx context.Context, key string, n int, lines chan<- env.LogLine, open openLogFunc) error {
	nss, err := r.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key)})
	if err != nil {
		return fmt.Errorf("listing namespaces of %s: %w", key, err)
	}
	if len(nss.Items) == 0 {
		return fmt.Errorf("%w: environment %s has no namespace", runtime.ErrNoLogs, key)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &logFollow{r: r, key: key, n: max(n, 0), lines: lines, open: open,
		owners: map[string]*owners{}, pods: map[types.UID]string{}, ignored: map[types.UID]bool{}, streamed: map[instance]bool{}}
	defer func() {
		cancel()
		f.wg.Wait()
	}()
	podSel := LabelEnv + "=" + key
	versions := map[string]string{}
	var initial []corev1.Pod
	for _, ns := range nss.Items {
		o, err := r.owners(ctx, key, ns.Name)
		if err != nil {
			return err
		}
		f.owners[ns.Name] = o
		pods, err := r.cs.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{LabelSelector: podSel})
		if err != nil {
			return fmt.Errorf("listing pods in %s: %w", ns.Name, err)
		}
		versions[ns.Name] = pods.ResourceVersion
		initial = append(initial, pods.Items...)
	}
	for i := range initial {
		p := &initial[i]
		if step, ok := podStep(p, f.owners[p.Namespace], true); ok {
			f.pods[p.UID] = step
		} else {
			f.ignored[p.UID] = true
		}
	}
	if len(f.pods) == 0 {
		return fmt.Errorf("%w: environment %s has no pods", runtime.ErrNoLogs, key)
	}
	for i := range initial {
		f.stream(ctx, &initial[i], true)
	}
	events := make(chan podEvent)
	for ns, rv := range versions {
		w, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = podSel
				return r.cs.CoreV1().Pods(ns).Watch(ctx, o)
			},
		})
		if err != nil {
			return fmt.Errorf("watching pods in %s: %w", ns, err)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer w.Stop()
			for {
				var ev podEvent
				select {
				case <-ctx.Done():
					return
				case e, ok := <-w.ResultChan():
					switch pod, isPod := e.Object.(*corev1.Pod); {
					case !ok:
						ev.err = fmt.Errorf("watching pods in %s: the watch ended", ns)
					case e.Type == watch.Error:
						ev.err = fmt.Errorf("watching pods in %s: %w", ns, apierrors.FromObject(e.Object))
					case !isPod || e.Type == watch.Deleted || e.Type == watch.Bookmark:
						continue
					default:
						ev.pod = pod
					}
				}
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
				if ev.err != nil {
					return
				}
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			if ev.err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return ev.err
			}
			if err := f.seen(ctx, ev.pod); err != nil {
				return err
			}
		}
	}
}

// seen handles a pod the watch reports: a pod not known yet is followed
// if it is a Deployment's or a migration Job's (the namespace's owners
// are listed again for one that matches none), and each of its
// containers that has started since is streamed.
func (f *logFollow) seen(ctx context.Context, p *corev1.Pod) error {
	if f.ignored[p.UID] {
		return nil
	}
	if _, ok := f.pods[p.UID]; !ok {
		step, ok := podStep(p, f.owners[p.Namespace], false)
		if !ok {
			o, err := f.r.owners(ctx, f.key, p.Namespace)
			if err != nil {
				return err
			}
			f.owners[p.Namespace] = o
			step, ok = podStep(p, o, false)
		}
		if !ok {
			f.ignored[p.UID] = true
			return nil
		}
		f.pods[p.UID] = step
	}
	f.stream(ctx, p, false)
	return nil
}

// stream starts streaming each container of p that runs or has run and
// is not streamed yet; tail: only its last n lines (what ran before the
// follow began), else all of it (it started since).
func (f *logFollow) stream(ctx context.Context, p *corev1.Pod, tail bool) {
	step, ok := f.pods[p.UID]
	if !ok {
		return
	}
	for _, c := range p.Spec.Containers {
		restarts, started := containerStarted(p, c.Name)
		if !started {
			continue
		}
		in := instance{pod: p.UID, container: c.Name, restarts: restarts}
		if f.streamed[in] {
			continue
		}
		f.streamed[in] = true
		opts := &corev1.PodLogOptions{Container: c.Name, Follow: true, Timestamps: true}
		if tail {
			opts.TailLines = ptr(int64(f.n))
		}
		tag := containerStep(step, p.Name, c.Name)
		pod := p.DeepCopy()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.copyLog(ctx, pod, opts, tag)
		}()
	}
}

// copyLog sends one container's log to the follow's lines. A log that
// cannot be read says so in a line of its own.
func (f *logFollow) copyLog(ctx context.Context, pod *corev1.Pod, opts *corev1.PodLogOptions, tag string) {
	send := func(l env.LogLine) error {
		select {
		case f.lines <- l:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rc, err := f.open(ctx, pod, opts)
	if err != nil {
		if ctx.Err() == nil {
			send(env.LogLine{Step: tag, Text: fmt.Sprintf("(log of pod %s container %s unavailable: %v)", pod.Name, opts.Container, err), Time: time.Now().UTC()})
		}
		return
	}
	defer rc.Close()
	if err := readPodLog(rc, tag, send); err != nil && ctx.Err() == nil {
		send(env.LogLine{Step: tag, Text: fmt.Sprintf("(log of pod %s container %s cut: %v)", pod.Name, opts.Container, err), Time: time.Now().UTC()})
	}
}

// owners lists the workloads of namespace ns whose pods are followed.
func (r *Runtime) owners(ctx context.Context, key, ns string) (*owners, error) {
	o := &owners{migrations: map[string]bool{}, rehearsals: map[string]bool{}}
	jobs, err := r.cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key)})
	if err != nil {
		return nil, fmt.Errorf("listing jobs in %s: %w", ns, err)
	}
	var migrations []batchv1.Job
	for _, j := range jobs.Items {
		switch {
		case j.Labels[LabelRehearse] != "":
			o.rehearsals[j.Name] = true
		case j.Labels[LabelMigrate] != "":
			o.migrations[j.Name] = true
			migrations = append(migrations, j)
		}
	}
	if len(migrations) > 0 {
		o.latest = newest(migrations, func(j batchv1.Job) metav1.Time { return j.CreationTimestamp }).Name
	}
	deps, err := r.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key)})
	if err != nil {
		return nil, fmt.Errorf("listing deployments in %s: %w", ns, err)
	}
	for _, d := range deps.Items {
		if sel := deploymentSelector(d); sel != nil {
			o.deployments = append(o.deployments, sel)
		}
	}
	return o, nil
}

func deploymentSelector(d appsv1.Deployment) labels.Selector {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil // no pods can be told apart as this Deployment's
	}
	return sel
}

// podStep says whether a pod's log is followed, and how its lines are
// tagged: "migrate" for a pod of a migration Job (at the start of a
// follow, only of the latest one), "rehearse" for one of a migration
// rehearsal's Job (which only exists while the rehearsal runs), ""
// (each container as "<pod>/<container>") for a Deployment's.
func podStep(p *corev1.Pod, o *owners, start bool) (string, bool) {
	if o == nil {
		return "", false
	}
	if job := p.Labels[batchv1.JobNameLabel]; job != "" && o.migrations[job] {
		return "migrate", !start || job == o.latest
	}
	if job := p.Labels[batchv1.JobNameLabel]; job != "" && o.rehearsals[job] {
		return "rehearse", true
	}
	for _, sel := range o.deployments {
		if sel.Matches(labels.Set(p.Labels)) {
			return "", true
		}
	}
	return "", false
}

// containerStep is the tag of a container's lines.
func containerStep(step, pod, container string) string {
	if step != "" {
		return step
	}
	return pod + "/" + container
}

// containerStarted says whether the named container of p runs or has run
// (only then has it a log), and how often it restarted.
func containerStarted(p *corev1.Pod, name string) (int32, bool) {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			return s.RestartCount, s.State.Running != nil || s.State.Terminated != nil
		}
	}
	return 0, false
}

// readPodLog reads a container's log as the API server streams it with
// timestamps ("2026-01-02T03:04:05.123456789Z text") and calls fn with
// each line, tagged step, safe to show (runtime.ReadLines), with its time
// when it has one.
func readPodLog(r io.Reader, step string, fn func(env.LogLine) error) error {
	return runtime.ReadLines(r, func(line string) error {
		t, text := splitTimestamp(line)
		return fn(env.LogLine{Step: step, Text: text, Time: t})
	})
}

// splitTimestamp splits the kubelet's RFC 3339 timestamp off a line; a
// line without one is all text.
func splitTimestamp(line string) (time.Time, string) {
	ts, text, ok := strings.Cut(line, " ")
	if !ok {
		ts, text = line, ""
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, line
	}
	return t.UTC(), text
}
