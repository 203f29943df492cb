package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/previewd/previewd/internal/env"
)

const (
	// AnnotationAsleep on an environment's namespace says since when
	// (RFC 3339) it sleeps: Sleep sets it before it scales anything
	// down, and the Deploy that wakes the environment removes it once the
	// rollout is done. Running reports such an environment as not running.
	AnnotationAsleep = "previewd.dev/asleep"
	// AnnotationReplicas on a slept Deployment or StatefulSet holds the
	// replicas it had, which the wake restores when the manifests do not
	// declare them (they are then the cluster's, e.g. an autoscaler's).
	AnnotationReplicas = "previewd.dev/replicas"
	// sleepManager is the field manager of what Sleep and the wake
	// change, so that previewd's own applies (FieldManager, forced) take
	// the replicas the manifests declare back.
	sleepManager = "previewd-sleep"
)

// ErrArgoCDSleep is Sleep's error in argocd mode: Argo CD owns the app's
// workloads (and would scale them back up), so previewd cannot put it to
// sleep.
var ErrArgoCDSleep = errors.New("runtime kind argocd: Argo CD owns the app's workloads, previewd cannot put them to sleep")

// Sleep puts the environment to sleep: it marks its namespaces asleep,
// then scales every Deployment and StatefulSet of its inventory that
// carries its labels to 0 replicas, noting the replicas each had.
// Everything else stays: the namespace, Services, Secrets, ConfigMaps,
// volumes (and the database, which is not the runtime's). An environment
// with nothing applied sleeps at once. Sleep is idempotent; Deploy of a
// release wakes the environment.
func (r *Runtime) Sleep(ctx context.Context, key string) error {
	if !r.o.ApplyManifests {
		return ErrArgoCDSleep
	}
	nss, err := r.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key)})
	if err != nil {
		return fmt.Errorf("listing namespaces of %s: %w", key, err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	for _, ns := range nss.Items {
		if ns.DeletionTimestamp != nil || ns.Annotations[AnnotationAsleep] != "" {
			continue
		}
		if err := r.annotateNamespace(ctx, ns.Name, &now); err != nil {
			return err
		}
	}
	items, err := r.inv.Items(ctx, key)
	if err != nil {
		return err
	}
	var errs []error
	for _, it := range env.Find(items, env.ItemObject) {
		ref, err := parseRef(it)
		if err != nil || !workload(ref) {
			continue
		}
		if err := r.scaleDown(ctx, key, ref); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		r.log.Info("asleep", "env", key)
	}
	return errors.Join(errs...)
}

// workload reports whether ref is a kind Sleep scales down.
func workload(ref objRef) bool {
	return ref.gvk().Group == "apps" && (ref.Kind == "Deployment" || ref.Kind == "StatefulSet")
}

// annotateNamespace sets (or, with nil, removes) the namespace's asleep
// mark.
func (r *Runtime) annotateNamespace(ctx context.Context, ns string, since *string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationAsleep: since}}})
	_, err := r.cs.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: sleepManager})
	if err != nil {
		return fmt.Errorf("marking namespace %s: %w", ns, err)
	}
	return nil
}

// scaled is a Deployment or a StatefulSet, as far as sleep and wake care.
type scaled struct {
	meta     metav1.ObjectMeta
	replicas *int32
}

func (r *Runtime) getWorkload(ctx context.Context, ref objRef) (scaled, error) {
	switch ref.Kind {
	case "Deployment":
		d, err := r.cs.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return scaled{}, err
		}
		return scaled{meta: d.ObjectMeta, replicas: d.Spec.Replicas}, nil
	default:
		s, err := r.cs.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return scaled{}, err
		}
		return scaled{meta: s.ObjectMeta, replicas: s.Spec.Replicas}, nil
	}
}

// patchWorkload merge-patches a workload as sleepManager, failing with a
// conflict when it changed since rv was read.
func (r *Runtime) patchWorkload(ctx context.Context, ref objRef, rv string, annotation any, replicas *int32) error {
	p := map[string]any{"metadata": map[string]any{
		"resourceVersion": rv,
		"annotations":     map[string]any{AnnotationReplicas: annotation},
	}}
	if replicas != nil {
		p["spec"] = map[string]any{"replicas": *replicas}
	}
	patch, _ := json.Marshal(p)
	opts := metav1.PatchOptions{FieldManager: sleepManager}
	var err error
	if ref.Kind == "Deployment" {
		_, err = r.cs.AppsV1().Deployments(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, patch, opts)
	} else {
		_, err = r.cs.AppsV1().StatefulSets(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, patch, opts)
	}
	return err
}

// scaleDown scales one workload of key to 0, noting the replicas it had
// (unless a previous Sleep did: those are the ones to restore).
func (r *Runtime) scaleDown(ctx context.Context, key string, ref objRef) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		w, err := r.getWorkload(ctx, ref)
		if err != nil {
			return err
		}
		if !r.owned(&w.meta, key) {
			return nil
		}
		had, noted := w.meta.Annotations[AnnotationReplicas]
		if !noted {
			had = strconv.Itoa(int(replicasOf(w.replicas)))
		}
		if noted && replicasOf(w.replicas) == 0 {
			return nil
		}
		return r.patchWorkload(ctx, ref, w.meta.ResourceVersion, had, ptr(int32(0)))
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("scaling %s to 0: %w", ref, err)
	}
	return nil
}

func replicasOf(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// asleep returns the applied namespaces that carry the asleep mark.
func (r *Runtime) asleep(ctx context.Context, applied []objRef) ([]string, error) {
	var out []string
	for _, ref := range applied {
		if ref.Kind != "Namespace" || ref.gvk().Group != "" {
			continue
		}
		ns, err := r.cs.CoreV1().Namespaces().Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading namespace %s: %w", ref.Name, err)
		}
		if ns.Annotations[AnnotationAsleep] != "" {
			out = append(out, ns.Name)
		}
	}
	return out, nil
}

// restore gives each applied workload that Sleep scaled down its
// replicas back: those the manifests declare were taken back by the apply
// (previewd's forced apply owns them again); the others get the replicas
// they had when they were put to sleep.
func (r *Runtime) restore(ctx context.Context, key string, applied []objRef) error {
	var errs []error
	for _, ref := range applied {
		if !workload(ref) {
			continue
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			w, err := r.getWorkload(ctx, ref)
			if err != nil {
				return err
			}
			had, noted := w.meta.Annotations[AnnotationReplicas]
			if !noted {
				return nil
			}
			var replicas *int32
			if !appliesReplicas(w.meta.ManagedFields) {
				n, err := strconv.ParseInt(had, 10, 32)
				if err != nil || n < 0 {
					return fmt.Errorf("annotation %s=%q is not a number of replicas", AnnotationReplicas, had)
				}
				replicas = ptr(int32(n))
			}
			return r.patchWorkload(ctx, ref, w.meta.ResourceVersion, nil, replicas)
		})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("waking %s: %w", ref, err))
		}
	}
	if len(errs) == 0 {
		r.log.Info("waking", "env", key)
	}
	return errors.Join(errs...)
}

// appliesReplicas reports whether previewd's apply owns spec.replicas
// (the manifests declare them).
func appliesReplicas(mf []metav1.ManagedFieldsEntry) bool {
	for _, e := range mf {
		if e.Manager != FieldManager || e.Operation != metav1.ManagedFieldsOperationApply || e.FieldsV1 == nil {
			continue
		}
		var f struct {
			Spec map[string]json.RawMessage `json:"f:spec"`
		}
		if json.Unmarshal(e.FieldsV1.GetRawBytes(), &f) == nil {
			if _, ok := f.Spec["f:replicas"]; ok {
				return true
			}
		}
	}
	return false
}

// awake removes the asleep mark of the namespaces, once their
// environment rolled out again.
func (r *Runtime) awake(ctx context.Context, key string, nss []string) error {
	for _, ns := range nss {
		if err := r.annotateNamespace(ctx, ns, nil); err != nil {
			return err
		}
	}
	if len(nss) > 0 {
		r.log.Info("awake", "env", key)
	}
	return nil
}
