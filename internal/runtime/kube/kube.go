package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"text/template"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/tmpl"
)

var (
	_ runtime.Runtime   = (*Runtime)(nil)
	_ runtime.Collector = (*Runtime)(nil)
	_ runtime.Readiness = (*Runtime)(nil)
	_ runtime.Logs      = (*Runtime)(nil)
	_ runtime.Sleeper   = (*Runtime)(nil)
	_ runtime.Meter     = (*Runtime)(nil)
)

// Options configure the runtime.
type Options struct {
	// Config is how to reach the API server; see RESTConfig.
	Config *rest.Config
	// Manifests is the directory of templates; empty applies none (argocd
	// mode). With InRepo, a relative path is a directory inside the app's
	// repository, read at each environment's commit; otherwise (or when
	// absolute) it is a directory of this machine, read again at every
	// render.
	Manifests string
	// InRepo makes relative Manifests and MigrateJob paths inside the
	// app's repository (see Manifests).
	InRepo bool
	// Cache is the object cache commits are fetched into to read the
	// manifests of a path inside the repository.
	Cache *git.Cache
	// GitEnv, if set, gives git its credentials for those fetches.
	GitEnv func(ctx context.Context) ([]string, error)
	// Production returns production's source: an untrusted change (a fork)
	// renders the manifests of its commit, never its own.
	Production func(ctx context.Context) (env.Source, error)
	// FetchTimeout bounds one fetch of the manifests' commit. Default 2m.
	FetchTimeout time.Duration
	// ApplyManifests is false in argocd mode: only the namespace and the
	// Secret are applied, and nothing is waited for.
	ApplyManifests bool
	// Namespace, Image and URL are templates (see config.Kubernetes).
	Namespace, Image, URL string
	// Instance is put on everything applied as LabelInstance, and Collect
	// only deletes what carries it (see config.Instance). Empty labels
	// as a previewd before instances did, and collects only such objects:
	// the daemon always sets it.
	Instance string
	// ProductionNamespace is production's namespace.
	ProductionNamespace string
	// Domain makes .Host: <key>.<domain>.
	Domain string
	// WaitForImage checks the image exists before anything else; a missing
	// one is retried after ImagePollInterval.
	WaitForImage      bool
	ImagePollInterval time.Duration
	// PullSecrets are namespace/name of dockerconfigjson Secrets.
	PullSecrets []string
	// RolloutTimeout, DeleteTimeout and MigrateTimeout bound the waits.
	RolloutTimeout, DeleteTimeout, MigrateTimeout time.Duration
	// MigrateCommand, if set, runs as a Job before each apply; MigrateJob
	// is a file holding a Job template instead (a path inside the
	// repository or of this machine, as Manifests).
	MigrateCommand []string
	MigrateJob     string
	// ConfigMigrate is the config's top-level migrate. A release whose app
	// spec (its commit's .previewd.yaml) has another migrate runs that
	// instead of MigrateCommand, as "/bin/sh -c" (an empty one runs no
	// Job); see migrationOf.
	ConfigMigrate string
	// PollInterval is how often rollouts and deletions are checked.
	// Default 250ms.
	PollInterval time.Duration
	// RemoteOptions are added to every registry request (tests pass a
	// transport).
	RemoteOptions []remote.Option
	// ProxyService and ProxyPort, when ProxyService is set, make Router
	// forward to that Service of each environment, on that port (a name,
	// or the endpoints' port number; empty: the only one). See
	// config.KubeProxy.
	ProxyService, ProxyPort string
	// ProxyDial, if set, replaces the proxy's dialer (a test seam: the
	// API server refuses loopback addresses in an EndpointSlice).
	ProxyDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OnApplied, if set, is called after each object is applied (a test
	// seam).
	OnApplied func(id string)
	Logger    *slog.Logger
}

// LabelInstance on everything previewd applies names the previewd
// deployment (Options.Instance) that owns it.
const LabelInstance = "previewd.dev/instance"

// Runtime runs each environment in its own namespace.
type Runtime struct {
	o         Options
	inv       inventory.Recorder
	log       *slog.Logger
	cs        kubernetes.Interface
	dyn       dynamic.Interface
	mapper    *restmapper.DeferredDiscoveryRESTMapper
	parsed    parsedCache // templates of paths inside the repository, per commit
	kindsMu   sync.Mutex
	kinds     map[schema.GroupVersionResource]bool // applied since start, for Collect
	nsTmpl    *template.Template
	imageTmpl *template.Template
	urlTmpl   *template.Template
}

// RESTConfig returns the config of a kubeconfig file (and context), or the
// in-cluster config when path is empty, with the given rate limits.
func RESTConfig(path, context string, qps float32, burst int) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: path},
			&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("loading kubernetes config: %w", err)
	}
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = "previewd"
	return cfg, nil
}

// New returns a runtime that records what it applies in inv. It parses
// every template of this machine now, so a bad one is reported at start
// (they are read again at every render); those inside the repository are
// read at each commit.
func New(o Options, inv inventory.Recorder) (*Runtime, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PollInterval == 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.Namespace == "" {
		o.Namespace = "preview-{{.Key}}"
	}
	if o.ProductionNamespace == "" {
		o.ProductionNamespace = "production"
	}
	if o.RolloutTimeout == 0 {
		o.RolloutTimeout = 5 * time.Minute
	}
	if o.DeleteTimeout == 0 {
		o.DeleteTimeout = 2 * time.Minute
	}
	if o.MigrateTimeout == 0 {
		o.MigrateTimeout = 10 * time.Minute
	}
	if o.ImagePollInterval == 0 {
		o.ImagePollInterval = 15 * time.Second
	}
	if o.FetchTimeout == 0 {
		o.FetchTimeout = 2 * time.Minute
	}
	r := &Runtime{o: o, inv: inv, log: o.Logger}
	var err error
	if r.nsTmpl, err = tmpl.Parse("namespace", o.Namespace); err != nil {
		return nil, err
	}
	if o.Image != "" {
		if r.imageTmpl, err = tmpl.Parse("image", o.Image); err != nil {
			return nil, err
		}
	}
	if o.URL != "" {
		if r.urlTmpl, err = tmpl.Parse("url", o.URL); err != nil {
			return nil, err
		}
	}
	if o.ApplyManifests && !r.inRepo(o.Manifests) {
		if _, err = LoadManifests(o.Manifests); err != nil {
			return nil, err
		}
	}
	if o.MigrateJob != "" && !r.inRepo(o.MigrateJob) {
		if _, err = loadJob(o.MigrateJob); err != nil {
			return nil, err
		}
	}
	if r.cs, err = kubernetes.NewForConfig(o.Config); err != nil {
		return nil, err
	}
	if r.dyn, err = dynamic.NewForConfig(o.Config); err != nil {
		return nil, err
	}
	r.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(r.cs.Discovery()))
	return r, nil
}

// Clientset returns the typed client the runtime uses.
func (r *Runtime) Clientset() kubernetes.Interface { return r.cs }

// Ready reports whether the API server answers.
func (r *Runtime) Ready(ctx context.Context) error {
	_, err := r.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("kubernetes API: %w", err)
	}
	return nil
}

// Namespace returns the namespace of a release (for the plugin
// generator).
func (r *Runtime) Namespace(rel *env.Release) (string, error) {
	d, err := r.dataFor(rel)
	return d.Namespace, err
}

// Data returns the template data of a release.
func (r *Runtime) Data(rel *env.Release) (Data, error) { return r.dataFor(rel) }

// Prepare renders the release's manifests (a template error is terminal
// for the SHA), settles its URL, and, with WaitForImage, checks that its
// image is in the registry.
func (r *Runtime) Prepare(ctx context.Context, rel *env.Release) error {
	d, objs, _, err := r.render(ctx, rel)
	if err != nil {
		return err
	}
	if r.urlTmpl != nil {
		rel.URL = d.URL
	} else if u, ok := ingressURL(objs); ok {
		rel.URL = u
	}
	if rel.Vars != nil {
		rel.Vars["PREVIEW_URL"] = rel.URL
	}
	if r.o.WaitForImage && d.Image != "" {
		found, err := r.imageExists(ctx, d.Image)
		if err != nil {
			return fmt.Errorf("checking image %s: %w", d.Image, err)
		}
		if !found {
			return &env.WaitError{Reason: "waiting for image " + d.Image, After: r.o.ImagePollInterval}
		}
	}
	return nil
}

// render returns the data, the rendered objects and the templates of a
// release. An error of the templates or the data is an *env.StepError
// (terminal for the SHA); one reaching the repository is not.
func (r *Runtime) render(ctx context.Context, rel *env.Release) (Data, []*unstructured.Unstructured, templates, error) {
	d, err := r.dataFor(rel)
	if err != nil {
		return d, nil, templates{}, renderError(err)
	}
	t, err := r.templatesFor(ctx, rel)
	if err != nil {
		return d, nil, t, err
	}
	objs, err := t.manifests.Render(d)
	if err != nil {
		return d, nil, t, renderError(err)
	}
	return d, objs, t, nil
}

// Deploy applies the namespace, the Secret and the manifests, prunes what
// left them, and waits until every Deployment is Available. It also wakes
// an environment put to sleep (see Sleep): the workloads get their
// replicas back before the wait, and the namespace loses its asleep mark
// after it.
func (r *Runtime) Deploy(ctx context.Context, rel *env.Release) error {
	applied, err := r.Apply(ctx, rel)
	if err != nil {
		return err
	}
	if !r.o.ApplyManifests {
		return nil
	}
	asleep, err := r.asleep(ctx, applied)
	if err != nil {
		return err
	}
	if len(asleep) > 0 {
		if err := r.restore(ctx, rel.Key, applied); err != nil {
			return err
		}
	}
	if err := r.waitRollout(ctx, applied); err != nil {
		return err
	}
	return r.awake(ctx, rel.Key, asleep)
}

// Running reports whether the environment's namespace exists and is not
// asleep, and the SHA last applied to it.
func (r *Runtime) Running(ctx context.Context, key string) (bool, string, error) {
	nss, err := r.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key)})
	if err != nil {
		return false, "", fmt.Errorf("listing namespaces of %s: %w", key, err)
	}
	for _, ns := range nss.Items {
		if ns.DeletionTimestamp == nil && ns.Annotations[AnnotationSHA] != "" && ns.Annotations[AnnotationAsleep] == "" {
			return true, ns.Annotations[AnnotationSHA], nil
		}
	}
	return false, "", nil
}

// envSelector selects the objects of this instance's environment key.
func (r *Runtime) envSelector(key string) string {
	return r.selector(labels.Set{LabelManagedBy: ManagedBy, LabelEnv: key})
}

// selector selects what set matches and this instance labelled: with an
// instance, what carries it; without one, what carries none.
func (r *Runtime) selector(set labels.Set) string {
	if r.o.Instance != "" {
		set[LabelInstance] = r.o.Instance
		return set.String()
	}
	return set.String() + ",!" + LabelInstance
}

// Delete deletes the environment's namespaces and its objects elsewhere,
// and waits until the namespaces are really gone. What is gone leaves the
// inventory; the rest stays to be retried.
func (r *Runtime) Delete(ctx context.Context, key string, items []env.Item) error {
	if key == env.ProductionKey {
		return errors.New("refusing to delete production's namespace")
	}
	// The namespaces to delete: those labelled as the environment's, and
	// those of its inventory that still carry its labels (an inventory
	// entry is recorded before its object is applied, so it may name a
	// namespace previewd never took over: that one is left alone, and is
	// no longer the environment's).
	nsSet := map[string]bool{}
	nss, err := r.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: r.envSelector(key)})
	if err != nil {
		return fmt.Errorf("listing namespaces of %s: %w", key, err)
	}
	for _, ns := range nss.Items {
		nsSet[ns.Name] = true
	}
	var errs []error
	for _, it := range env.Find(items, env.ItemNamespace) {
		if nsSet[it.Name] {
			continue
		}
		if it.Name == r.o.ProductionNamespace {
			r.log.Warn("not deleting production's namespace", "env", key, "namespace", it.Name)
			if err := r.inv.DeleteItem(ctx, key, it); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		ns, err := r.cs.CoreV1().Namespaces().Get(ctx, it.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			nsSet[it.Name] = true // gone already: waitGone returns at once
		case err != nil:
			errs = append(errs, fmt.Errorf("reading namespace %s: %w", it.Name, err))
		case r.owned(ns, key):
			nsSet[it.Name] = true
		default:
			r.log.Warn("not deleting a namespace without previewd's labels for the environment", "env", key, "namespace", it.Name, "labels", ns.Labels)
			if err := r.inv.DeleteItem(ctx, key, it); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if nsSet[r.o.ProductionNamespace] {
		r.log.Warn("not deleting production's namespace", "env", key, "namespace", r.o.ProductionNamespace)
		delete(nsSet, r.o.ProductionNamespace)
		for _, it := range env.Find(items, env.ItemNamespace) {
			if it.Name == r.o.ProductionNamespace {
				if err := r.inv.DeleteItem(ctx, key, it); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}

	// Objects outside the namespaces being deleted go one by one.
	for _, it := range env.Find(items, env.ItemObject) {
		ref, err := parseRef(it)
		if err != nil || nsSet[ref.Namespace] {
			continue
		}
		if err := r.deleteObject(ctx, key, ref); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.inv.DeleteItem(ctx, key, it); err != nil {
			errs = append(errs, err)
		}
	}
	for ns := range nsSet {
		err := r.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting namespace %s: %w", ns, err))
		}
	}
	for ns := range nsSet {
		if err := r.waitGone(ctx, ns); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, it := range items {
			if it.Kind == env.ItemNamespace && it.Name == ns {
				if err := r.inv.DeleteItem(ctx, key, it); err != nil {
					errs = append(errs, err)
				}
			}
			if it.Kind != env.ItemObject {
				continue
			}
			if ref, err := parseRef(it); err == nil && ref.Namespace == ns {
				if err := r.inv.DeleteItem(ctx, key, it); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if len(errs) == 0 && r.o.Cache != nil {
		// The commits only this environment kept may now be pruned.
		errs = append(errs, r.o.Cache.DeleteRef(ctx, git.CacheRef(key)))
	}
	return errors.Join(errs...)
}

// waitGone polls until the namespace is gone (at least about 5 s: the
// namespace controller waits that long before it acts).
func (r *Runtime) waitGone(ctx context.Context, ns string) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.DeleteTimeout)
	defer cancel()
	t := time.NewTicker(r.o.PollInterval)
	defer t.Stop()
	for {
		n, err := r.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil && !waitable(ctx, err):
			return fmt.Errorf("reading namespace %s: %w", ns, err)
		}
		select {
		case <-ctx.Done():
			msg := "still terminating"
			if n != nil {
				for _, c := range n.Status.Conditions {
					if c.Status == "True" {
						msg += "; " + c.Message
					}
				}
			}
			return fmt.Errorf("namespace %s %s after %s", ns, msg, r.o.DeleteTimeout)
		case <-t.C:
		}
	}
}

// Collect deletes namespaces and objects labelled as this instance's whose
// environment is not live (left by a crash before they were recorded, or
// by a previewd whose store was lost). It returns what it deleted. Other
// instances' objects are never touched, nor, by an instanced runtime,
// those of a previewd before instances (whose they are cannot be told):
// apply adopts those when their environment is deployed again.
//
// liveKeys is read after the cluster is listed: an environment is recorded
// before its namespace is made, so a namespace being made while Collect
// runs is always seen as live.
func (r *Runtime) Collect(ctx context.Context, liveKeys func(context.Context) (map[string]bool, error)) ([]string, error) {
	sel := r.selector(labels.Set{LabelManagedBy: ManagedBy})
	nss, err := r.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	kinds := r.collectKinds()
	lists := make([]*unstructured.UnstructuredList, len(kinds))
	for i, gvr := range kinds {
		l, err := r.dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		lists[i] = l
	}
	live, err := liveKeys(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	gone := map[string]bool{}
	for _, ns := range nss.Items {
		key, ok := ns.Labels[LabelEnv]
		if !ok || live[key] || key == env.ProductionKey || ns.Name == r.o.ProductionNamespace {
			continue
		}
		gone[ns.Name] = true
		if ns.DeletionTimestamp != nil {
			continue
		}
		if err := r.cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "namespace "+ns.Name)
	}
	for i, gvr := range kinds {
		if lists[i] == nil {
			continue
		}
		for _, o := range lists[i].Items {
			key, ok := o.GetLabels()[LabelEnv]
			if !ok || live[key] || key == env.ProductionKey || gone[o.GetNamespace()] || o.GetDeletionTimestamp() != nil {
				continue
			}
			err := r.dyn.Resource(gvr).Namespace(o.GetNamespace()).Delete(ctx, o.GetName(), background)
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName()))
		}
	}
	return removed, errors.Join(errs...)
}

// ReadFile implements runtime.FileReader from the object cache, which
// holds src's commit once Prepare has fetched it.
func (r *Runtime) ReadFile(ctx context.Context, src env.Source, path string) ([]byte, error) {
	return r.o.Cache.File(ctx, src.SHA, path)
}
