package kube

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/tmpl"
)

// FieldManager is the server-side apply field manager of everything
// previewd applies.
const FieldManager = "previewd"

var background = metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationBackground)}

func ptr[T any](v T) *T { return &v }

// objRef names one applied object; it is the Data of its inventory item.
type objRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

func refOf(o *unstructured.Unstructured) objRef {
	return objRef{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
}

func (o objRef) gvk() schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(o.APIVersion, o.Kind)
}

// id is the inventory name: Kind[.group]/namespace/name, without the
// version, so that a new API version of the same object is the same item.
func (o objRef) id() string {
	gk := o.gvk().GroupKind()
	return gk.String() + "/" + o.Namespace + "/" + o.Name
}

func (o objRef) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

func (o objRef) item() env.Item {
	if o.Kind == "Namespace" && o.gvk().Group == "" {
		return env.Item{Kind: env.ItemNamespace, Name: o.Name}
	}
	data, _ := json.Marshal(o)
	return env.Item{Kind: env.ItemObject, Name: o.id(), Data: data}
}

func parseRef(it env.Item) (objRef, error) {
	if it.Kind == env.ItemNamespace {
		return objRef{APIVersion: "v1", Kind: "Namespace", Name: it.Name}, nil
	}
	var o objRef
	if err := json.Unmarshal(it.Data, &o); err != nil || o.Kind == "" || o.Name == "" {
		return o, fmt.Errorf("inventory item %s has no object reference", it.Name)
	}
	return o, nil
}

// applyOrder is the order kinds are applied in: what others depend on
// first (as Helm does).
var applyOrder = map[string]int{
	"Namespace": 0, "NetworkPolicy": 1, "ResourceQuota": 2, "LimitRange": 3, "PodDisruptionBudget": 4,
	"ServiceAccount": 5, "Secret": 6, "ConfigMap": 7, "PersistentVolumeClaim": 8,
	"CustomResourceDefinition": 9, "ClusterRole": 10, "ClusterRoleBinding": 11, "Role": 12, "RoleBinding": 13,
	"Service": 14, "DaemonSet": 15, "Pod": 16, "ReplicaSet": 17, "Deployment": 18,
	"HorizontalPodAutoscaler": 19, "StatefulSet": 20, "Job": 21, "CronJob": 22, "Ingress": 23,
}

func order(kind string) int {
	if n, ok := applyOrder[kind]; ok {
		return n
	}
	return len(applyOrder)
}

// baseObjects are the namespace and the Secret previewd makes itself,
// named d.SecretName (RehearsalSecretName for a rehearsal; empty is
// SecretName).
func baseObjects(d Data, vars map[string]string) []*unstructured.Unstructured {
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace"}}
	ns.SetName(d.Namespace)
	ns.SetAnnotations(map[string]string{AnnotationSHA: d.SHA})
	data := map[string]any{}
	for k, v := range vars {
		data[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	sec := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data}}
	name := d.SecretName
	if name == "" {
		name = SecretName
	}
	sec.SetName(name)
	sec.SetNamespace(d.Namespace)
	return []*unstructured.Unstructured{ns, sec}
}

// label adds previewd's labels to an object and, for workloads, to their
// pod template, so every pod can be traced to its environment.
func label(o *unstructured.Unstructured, key, instance string) {
	l := o.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[LabelManagedBy], l[LabelEnv] = ManagedBy, key
	if instance != "" {
		l[LabelInstance] = instance
	}
	o.SetLabels(l)
	if pl, ok, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels"); ok || o.GetKind() == "Deployment" || o.GetKind() == "Job" {
		if pl == nil {
			pl = map[string]string{}
		}
		pl[LabelEnv] = key
		unstructured.SetNestedStringMap(o.Object, pl, "spec", "template", "metadata", "labels")
	}
}

// mapping returns how to reach a kind, refreshing discovery once when the
// kind is unknown (e.g. a CRD installed since).
func (r *Runtime) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := r.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		r.mapper.Reset()
		m, err = r.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	return m, err
}

type prepared struct {
	obj *unstructured.Unstructured
	m   *meta.RESTMapping
	ref objRef
}

// prepare labels and places the objects (namespaced kinds without a
// namespace go to the environment's) and sorts them into apply order.
func (r *Runtime) prepare(key, namespace string, objs []*unstructured.Unstructured) ([]prepared, error) {
	out := make([]prepared, 0, len(objs))
	seen := map[string]bool{}
	for _, o := range objs {
		m, err := r.mapping(o.GroupVersionKind())
		if meta.IsNoMatchError(err) {
			return nil, &env.StepError{Step: "apply", Err: fmt.Errorf("%s %s: kind not served by the cluster", o.GetKind(), o.GetName())}
		}
		if err != nil {
			return nil, fmt.Errorf("looking up %s: %w", o.GetKind(), err)
		}
		r.sawKind(o.GetKind(), m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				o.SetNamespace(namespace)
			}
		} else {
			o.SetNamespace("")
		}
		label(o, key, r.o.Instance)
		ref := refOf(o)
		if seen[ref.id()] {
			return nil, &env.StepError{Step: "apply", Err: fmt.Errorf("%s appears twice in the manifests", ref)}
		}
		seen[ref.id()] = true
		out = append(out, prepared{obj: o, m: m, ref: ref})
	}
	sort.SliceStable(out, func(i, j int) bool { return order(out[i].ref.Kind) < order(out[j].ref.Kind) })
	return out, nil
}

// Apply applies the release's namespace, Secret and manifests with
// server-side apply, recording each in the inventory first, then prunes
// the objects of the previous apply that are no longer rendered. It
// returns what it applied.
func (r *Runtime) Apply(ctx context.Context, rel *env.Release) ([]objRef, error) {
	d, objs, t, err := r.render(ctx, rel)
	if err != nil {
		return nil, err
	}
	return r.applyKeeping(ctx, rel, d, objs, true, r.migrateRef(rel, t.migrate, d))
}

// apply applies base objects (namespace, Secret) and objs; with prune it
// then deletes what the inventory holds beyond them.
func (r *Runtime) apply(ctx context.Context, rel *env.Release, d Data, objs []*unstructured.Unstructured, prune bool) ([]objRef, error) {
	return r.applyKeeping(ctx, rel, d, objs, prune, nil)
}

// applyKeeping is apply whose pruning also keeps keep (the migration Job).
func (r *Runtime) applyKeeping(ctx context.Context, rel *env.Release, d Data, objs []*unstructured.Unstructured, prune bool, keep *objRef) ([]objRef, error) {
	all := append(baseObjects(d, rel.Vars), objs...)
	ps, err := r.prepare(rel.Key, d.Namespace, all)
	if err != nil {
		return nil, err
	}
	if err := r.checkNamespace(ctx, rel, d.Namespace); err != nil {
		return nil, err
	}
	old, err := r.inv.Items(ctx, rel.Key)
	if err != nil {
		return nil, err
	}
	want := make([]env.Item, 0, len(ps)+1)
	for _, p := range ps {
		want = append(want, p.ref.item())
	}
	for _, it := range inventory.Changed(old, want) {
		if err := r.inv.PutItem(ctx, rel.Key, it); err != nil {
			return nil, fmt.Errorf("recording %s: %w", it.Name, err)
		}
	}
	applied := make([]objRef, 0, len(ps))
	for _, p := range ps {
		if err := r.applyOne(ctx, p); err != nil {
			return applied, err
		}
		applied = append(applied, p.ref)
		if r.o.OnApplied != nil {
			r.o.OnApplied(p.ref.id())
		}
	}
	if !prune {
		return applied, nil
	}
	if keep != nil {
		want = append(want, keep.item())
	}
	var errs []error
	for _, it := range inventory.Diff(old, want) {
		if it.Kind != env.ItemObject && it.Kind != env.ItemNamespace {
			continue
		}
		ref, err := parseRef(it)
		if err == nil {
			if ref.Kind == "Namespace" && ref.Name == r.o.ProductionNamespace {
				err = nil // never delete production's namespace
			} else {
				err = r.deleteObject(ctx, rel.Key, ref)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("pruned", "env", rel.Key, "object", ref.String())
		if err := r.inv.DeleteItem(ctx, rel.Key, it); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return applied, fmt.Errorf("pruning: %w", errors.Join(errs...))
	}
	return applied, nil
}

// checkNamespace refuses to take over a namespace that is not the
// environment's: teardown deletes the environment's namespace, so taking
// over someone else's (an existing team namespace, another environment's
// when the namespace template does not tell them apart, production's)
// would delete it later. A namespace that does not exist yet, or carries
// previewd's labels for this environment, is fine; production may adopt an
// existing namespace nobody else claims, as it is never deleted.
func (r *Runtime) checkNamespace(ctx context.Context, rel *env.Release, ns string) error {
	if !rel.Production() && ns == r.o.ProductionNamespace {
		return &env.StepError{Step: "apply", Err: fmt.Errorf("namespace %s is production's: the namespace template must give each environment its own", ns)}
	}
	cur, err := r.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading namespace %s: %w", ns, err)
	case r.owned(cur, rel.Key):
		return nil
	case rel.Production() && cur.Labels[LabelEnv] == "":
		return nil
	}
	who := "not made by previewd"
	if k := cur.Labels[LabelEnv]; k != "" && cur.Labels[LabelManagedBy] == ManagedBy {
		who = "environment " + k + "'s"
	}
	return &env.StepError{Step: "apply", Err: fmt.Errorf("namespace %s already exists and is %s: previewd does not take it over (check runtime.kubernetes.namespace)", ns, who)}
}

func (r *Runtime) applyOne(ctx context.Context, p prepared) error {
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	var err error
	if p.ref.Namespace != "" {
		_, err = r.dyn.Resource(p.m.Resource).Namespace(p.ref.Namespace).Apply(ctx, p.ref.Name, p.obj, opts)
	} else {
		_, err = r.dyn.Resource(p.m.Resource).Apply(ctx, p.ref.Name, p.obj, opts)
	}
	switch {
	case err == nil:
		return nil
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		// The manifests are wrong for this SHA: retrying cannot help.
		return &env.StepError{Step: "apply", Err: fmt.Errorf("%s: %w", p.ref, err)}
	}
	return fmt.Errorf("applying %s: %w", p.ref, err)
}

// owned reports whether an object carries previewd's labels for the
// environment key, of this instance or of a previewd before instances
// (which this one adopts: the next apply labels it as this instance's).
func (r *Runtime) owned(o metav1.Object, key string) bool {
	l := o.GetLabels()
	inst, ok := l[LabelInstance]
	return l[LabelManagedBy] == ManagedBy && l[LabelEnv] == key && (!ok || inst == r.o.Instance)
}

// deleteObject deletes an object of the environment key's inventory, in
// the background. Only an object that carries previewd's labels for key is
// deleted: an inventory entry is recorded before its object is applied, so
// it may name an object previewd never took over (the apply failed, or
// someone else made it since), and that one is left alone. Either way the
// object is no longer the environment's, and nil is returned.
func (r *Runtime) deleteObject(ctx context.Context, key string, ref objRef) error {
	m, err := r.mapping(ref.gvk())
	if meta.IsNoMatchError(err) {
		return nil // the kind is gone, and so is the object
	}
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = r.dyn.Resource(m.Resource)
	if ref.Namespace != "" {
		ri = r.dyn.Resource(m.Resource).Namespace(ref.Namespace)
	}
	cur, err := ri.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", ref, err)
	}
	if !r.owned(cur, key) {
		r.log.Warn("not deleting an object without previewd's labels for the environment", "env", key, "object", ref.String(), "labels", cur.GetLabels())
		return nil
	}
	if cur.GetDeletionTimestamp() != nil {
		return nil
	}
	opts := background
	opts.Preconditions = &metav1.Preconditions{UID: ptr(cur.GetUID())}
	err = ri.Delete(ctx, ref.Name, opts)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting %s: %w", ref, err)
	}
	return nil
}

// sawKind notes a kind applied, for Collect.
func (r *Runtime) sawKind(kind string, gvr schema.GroupVersionResource) {
	if kind == "Namespace" {
		return
	}
	r.kindsMu.Lock()
	defer r.kindsMu.Unlock()
	if r.kinds == nil {
		r.kinds = map[schema.GroupVersionResource]bool{}
	}
	r.kinds[gvr] = true
}

// collectKinds are the kinds Collect looks through for stray objects:
// Secrets, Jobs, every kind applied since start and, for manifests of this
// machine, every kind they render.
func (r *Runtime) collectKinds() []schema.GroupVersionResource {
	kinds := map[schema.GroupVersionResource]bool{
		{Version: "v1", Resource: "secrets"}:              true,
		{Group: "batch", Version: "v1", Resource: "jobs"}: true,
	}
	if r.o.ApplyManifests && !r.inRepo(r.o.Manifests) {
		if m, err := LoadManifests(r.o.Manifests); err == nil {
			if objs, err := m.Render(tmpl.Sample()); err == nil {
				for _, o := range objs {
					if mp, err := r.mapping(o.GroupVersionKind()); err == nil && o.GetKind() != "Namespace" {
						kinds[mp.Resource] = true
					}
				}
			}
		}
	}
	r.kindsMu.Lock()
	maps.Copy(kinds, r.kinds)
	r.kindsMu.Unlock()
	out := make([]schema.GroupVersionResource, 0, len(kinds))
	for k := range maps.Keys(kinds) {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
