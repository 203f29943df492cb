package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/previewd/previewd/internal/runtime"
)

var _ runtime.Router = (*Router)(nil)

// Router is previewd's proxy to the environments' Services, for preview
// hosts routed to previewd (Options.ProxyService): it forwards a request
// to a ready endpoint of the environment's Service, read from its
// EndpointSlices as an ingress controller does. It watches the
// EndpointSlices and namespaces of this instance's environments, so a
// request asks nothing of the API server. An environment asleep, being
// deleted, or without a ready endpoint is not served (Proxy's false).
type Router struct {
	service, port string
	log           *slog.Logger
	factory       informers.SharedInformerFactory
	namespaces    cache.SharedIndexInformer
	slices        cache.SharedIndexInformer
	stop          chan struct{}
	stopOnce      sync.Once
	proxy         *httputil.ReverseProxy
	transport     http.RoundTripper
	next          atomic.Uint64
}

// byEnv indexes the watched objects by their environment's key.
const byEnv = "env"

// Router returns the proxy to the environments' Services when
// Options.ProxyService is set (it starts watching at once, until Close),
// and false when previewd does not proxy.
func (r *Runtime) Router() (*Router, bool) {
	if r.o.ProxyService == "" || !r.o.ApplyManifests {
		return nil, false
	}
	sel := r.selector(labels.Set{LabelManagedBy: ManagedBy})
	f := informers.NewSharedInformerFactoryWithOptions(r.cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }),
		informers.WithTransform(func(obj any) (any, error) {
			// What the proxy never reads stays out of memory.
			if a, err := meta.Accessor(obj); err == nil {
				a.SetManagedFields(nil)
			}
			return obj, nil
		}))
	index := cache.Indexers{byEnv: func(obj any) ([]string, error) {
		a, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		if k := a.GetLabels()[LabelEnv]; k != "" {
			return []string{k}, nil
		}
		return nil, nil
	}}
	rt := &Router{
		service: r.o.ProxyService, port: r.o.ProxyPort, log: r.log, factory: f,
		namespaces: f.Core().V1().Namespaces().Informer(),
		slices:     f.Discovery().V1().EndpointSlices().Informer(),
		stop:       make(chan struct{}),
	}
	for _, inf := range []cache.SharedIndexInformer{rt.namespaces, rt.slices} {
		if err := inf.AddIndexers(index); err != nil {
			panic(err) // only before Start, which is below
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if r.o.ProxyDial != nil {
		tr.DialContext = r.o.ProxyDial
	}
	tr.MaxIdleConnsPerHost = 16
	rt.transport = tr
	rt.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(*target)
			pr.SetURL(&url.URL{Scheme: "http", Host: t.addrs[0]})
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: retryTransport{rt},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			t := req.Context().Value(targetKey{}).(*target)
			rt.log.Warn("proxying", "env", t.key, "host", req.Host, "err", err)
			http.Error(w, "the environment did not answer: "+err.Error(), http.StatusBadGateway)
		},
		FlushInterval: -1,
	}
	f.Start(rt.stop)
	return rt, true
}

// Close stops watching.
func (rt *Router) Close() error {
	rt.stopOnce.Do(func() {
		close(rt.stop)
		rt.factory.Shutdown()
	})
	return nil
}

// WaitForSync waits until the first listing is in, so that Proxy answers
// from the cluster's state (it answers false before).
func (rt *Router) WaitForSync(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), rt.namespaces.HasSynced, rt.slices.HasSynced) {
		return fmt.Errorf("watching endpoint slices: %w", context.Cause(ctx))
	}
	return nil
}

// Proxy returns the handler that forwards a request to a ready endpoint
// of the environment's Service, and false when it has none (asleep, not
// rolled out, not there) or the watch has not listed them yet.
func (rt *Router) Proxy(key string) (http.Handler, bool) {
	addrs := rt.endpoints(key)
	if len(addrs) == 0 {
		return nil, false
	}
	// Round robin over the ready endpoints; a retry takes the next one.
	n := int(rt.next.Add(1) % uint64(len(addrs)))
	addrs = slices.Concat(addrs[n:], addrs[:n])
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		t := &target{key: key, addrs: addrs}
		rt.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), targetKey{}, t)))
	}), true
}

// endpoints returns host:port of every ready endpoint of key's Service
// in its namespaces that are awake, sorted.
func (rt *Router) endpoints(key string) []string {
	if !rt.namespaces.HasSynced() || !rt.slices.HasSynced() {
		return nil
	}
	nss, _ := rt.namespaces.GetIndexer().ByIndex(byEnv, key)
	awake := map[string]bool{}
	for _, o := range nss {
		ns := o.(*corev1.Namespace)
		if ns.DeletionTimestamp == nil && ns.Annotations[AnnotationSHA] != "" && ns.Annotations[AnnotationAsleep] == "" {
			awake[ns.Name] = true
		}
	}
	if len(awake) == 0 {
		return nil
	}
	eps, _ := rt.slices.GetIndexer().ByIndex(byEnv, key)
	var out []string
	for _, o := range eps {
		s := o.(*discoveryv1.EndpointSlice)
		if !awake[s.Namespace] || s.Labels[discoveryv1.LabelServiceName] != rt.service {
			continue
		}
		out = append(out, readyAddrs(s, rt.port)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// readyAddrs returns host:port of the slice's ready endpoints, for the
// port named (or numbered) port, or the slice's only port when port is
// empty.
func readyAddrs(s *discoveryv1.EndpointSlice, port string) []string {
	if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
		return nil
	}
	var p *int32
	num, err := strconv.Atoi(port)
	for _, sp := range s.Ports {
		name := ""
		if sp.Name != nil {
			name = *sp.Name
		}
		switch {
		case sp.Port == nil || (sp.Protocol != nil && *sp.Protocol != corev1.ProtocolTCP):
		case port == "" && len(s.Ports) == 1, err == nil && int(*sp.Port) == num, err != nil && name == port:
			p = sp.Port
		}
	}
	if p == nil {
		return nil
	}
	var out []string
	for _, ep := range s.Endpoints {
		c := ep.Conditions
		if len(ep.Addresses) == 0 || (c.Ready != nil && !*c.Ready) || (c.Terminating != nil && *c.Terminating) {
			continue
		}
		out = append(out, net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*p))))
	}
	return out
}

type targetKey struct{}

// target is where one request goes: addrs[0], then the next on a retry.
type target struct {
	key   string
	addrs []string
}

// retryTransport sends a request to its endpoint, and once more to the
// next ready one if the first could not be reached and the request is
// safe to repeat (a pod that just went away).
type retryTransport struct{ rt *Router }

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.transport.RoundTrip(req)
	tg := req.Context().Value(targetKey{}).(*target)
	if err == nil || len(tg.addrs) < 2 || !runtime.DialFailed(err) || !runtime.Repeatable(req) {
		return resp, err
	}
	again := req.Clone(req.Context())
	again.URL.Host = tg.addrs[1]
	resp, err2 := t.rt.transport.RoundTrip(again)
	if err2 != nil {
		return nil, fmt.Errorf("%w; again on %s: %w", err, tg.addrs[1], err2)
	}
	return resp, nil
}
