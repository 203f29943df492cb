package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/env"
)

// waitRollout waits until every applied Deployment is Available. A
// Deployment past its progress deadline, or the rollout timeout, fails the
// step with the reason read from the Deployment's and its Pods' conditions
// and from the namespace's events.
func (r *Runtime) waitRollout(ctx context.Context, applied []objRef) error {
	var pending []objRef
	for _, o := range applied {
		if o.Kind == "Deployment" && o.gvk().Group == "apps" {
			pending = append(pending, o)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, r.o.RolloutTimeout)
	defer cancel()
	t := time.NewTicker(r.o.PollInterval)
	defer t.Stop()
	why := map[string]string{}
	for {
		left := pending[:0]
		for _, o := range pending {
			d, err := r.cs.AppsV1().Deployments(o.Namespace).Get(wctx, o.Name, metav1.GetOptions{})
			if err != nil {
				if waitable(wctx, err) {
					left = append(left, o)
					continue
				}
				return fmt.Errorf("reading %s: %w", o, err)
			}
			done, reason, failed := deploymentStatus(d)
			if failed {
				return r.rolloutFailed(ctx, d, reason)
			}
			if !done {
				why[o.Name] = reason
				left = append(left, o)
			}
		}
		pending = left
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			o := pending[0]
			d, err := r.cs.AppsV1().Deployments(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
			if err != nil {
				return &env.StepError{Step: "rollout", Err: fmt.Errorf("%s not available after %s: %s", o, r.o.RolloutTimeout, why[o.Name])}
			}
			return r.rolloutFailed(ctx, d, fmt.Sprintf("not available after %s: %s", r.o.RolloutTimeout, why[o.Name]))
		case <-t.C:
		}
	}
}

// deploymentStatus says whether a Deployment is rolled out (as kubectl
// rollout status does), why not, and whether it failed for good.
func deploymentStatus(d *appsv1.Deployment) (done bool, reason string, failed bool) {
	if d.Generation > d.Status.ObservedGeneration {
		return false, "waiting for the deployment controller", false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "progress deadline exceeded: " + c.Message, true
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want), false
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas), false
	case st.AvailableReplicas < st.UpdatedReplicas:
		return false, fmt.Sprintf("%d of %d updated replicas available", st.AvailableReplicas, st.UpdatedReplicas), false
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status != corev1.ConditionTrue {
			return false, "not available: " + c.Message, false
		}
	}
	return true, "", false
}

// rolloutFailed builds the step error of a Deployment that did not roll
// out: the first concrete reason found (a container waiting on its image,
// an unschedulable pod, a warning event) leads, the rest is the tail.
func (r *Runtime) rolloutFailed(ctx context.Context, d *appsv1.Deployment, reason string) error {
	lines, cause := r.diagnose(ctx, d)
	msg := fmt.Sprintf("deployment %s %s", d.Name, reason)
	if cause != "" {
		msg += ": " + cause
	}
	return &env.StepError{Step: "rollout", Err: errors.New(msg), Tail: strings.Join(lines, "\n")}
}

// diagnose reads the Deployment's conditions, its Pods' conditions and
// container states, and the warning events about them.
func (r *Runtime) diagnose(ctx context.Context, d *appsv1.Deployment) (lines []string, cause string) {
	for _, c := range d.Status.Conditions {
		lines = append(lines, fmt.Sprintf("deployment/%s %s=%s %s: %s", d.Name, c.Type, c.Status, c.Reason, c.Message))
	}
	involved := map[string]bool{d.Name: true}
	if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
		pods, err := r.cs.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err == nil {
			if len(pods.Items) == 0 {
				lines = append(lines, "no pods")
			}
			for i, p := range pods.Items {
				involved[p.Name] = true
				if i >= 5 {
					continue
				}
				for _, c := range p.Status.ContainerStatuses {
					switch {
					case c.State.Waiting != nil:
						s := fmt.Sprintf("container %s is waiting: %s %s", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
						lines = append(lines, "pod/"+p.Name+" "+s)
						if cause == "" {
							cause = strings.TrimSpace(s)
						}
					case c.State.Terminated != nil:
						s := fmt.Sprintf("container %s terminated: %s (exit %d) %s", c.Name, c.State.Terminated.Reason, c.State.Terminated.ExitCode, c.State.Terminated.Message)
						lines = append(lines, "pod/"+p.Name+" "+s)
						if cause == "" {
							cause = strings.TrimSpace(s)
						}
					}
				}
				for _, c := range p.Status.Conditions {
					if c.Status == corev1.ConditionTrue {
						continue
					}
					s := fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
					lines = append(lines, "pod/"+p.Name+" "+s)
					if cause == "" && c.Reason != "" {
						cause = fmt.Sprintf("pod %s %s", c.Reason, c.Message)
					}
				}
			}
		}
	}
	evs, err := r.cs.CoreV1().Events(d.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	if err == nil {
		items := evs.Items
		sort.Slice(items, func(i, j int) bool { return eventTime(items[i]).Before(eventTime(items[j])) })
		n := 0
		for i := len(items) - 1; i >= 0 && n < 10; i-- {
			e := items[i]
			name := e.InvolvedObject.Name
			if !involved[name] && !strings.HasPrefix(name, d.Name+"-") {
				continue
			}
			n++
			s := fmt.Sprintf("%s %s/%s: %s", e.Reason, strings.ToLower(e.InvolvedObject.Kind), name, e.Message)
			lines = append(lines, "event "+s)
			if cause == "" {
				cause = s
			}
		}
	}
	for _, c := range d.Status.Conditions {
		if cause == "" && c.Status != corev1.ConditionTrue && c.Message != "" {
			cause = c.Message
		}
	}
	return lines, cause
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// waitable reports whether an error while polling is the end of the wait
// (its deadline, or the client's rate limiter refusing to go past it)
// rather than an answer of the API server.
func waitable(ctx context.Context, err error) bool {
	var st apierrors.APIStatus
	return ctx.Err() != nil || !errors.As(err, &st)
}
