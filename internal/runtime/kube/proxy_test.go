package kube

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReadyAddrs(t *testing.T) {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(name string, n int32, proto corev1.Protocol) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: &name, Port: &n, Protocol: &proto}
	}
	yes, no := true, false
	eps := []discoveryv1.Endpoint{
		{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
		{Addresses: []string{"10.0.0.2"}}, // unknown: ready
		{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}}, // not ready
		{Addresses: []string{"10.0.0.4"}, Conditions: discoveryv1.EndpointConditions{Ready: &no, Terminating: &yes}},
		{},
	}
	tests := map[string]struct {
		slice discoveryv1.EndpointSlice
		port  string
		want  []string
	}{
		"only port": {discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port("", 8080, tcp)}, Endpoints: eps}, "",
			[]string{"10.0.0.1:8080", "10.0.0.2:8080"}},
		"by name": {discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port("metrics", 9090, tcp), port("http", 8080, tcp)}, Endpoints: eps[:1]}, "http",
			[]string{"10.0.0.1:8080"}},
		"by number": {discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port("metrics", 9090, tcp), port("http", 8080, tcp)}, Endpoints: eps[:1]}, "9090",
			[]string{"10.0.0.1:9090"}},
		"several ports, none named": {discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port("metrics", 9090, tcp), port("http", 8080, tcp)}, Endpoints: eps[:1]}, "",
			nil},
		"udp": {discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port("dns", 53, udp)}, Endpoints: eps[:1]}, "", nil},
		"ipv6": {discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv6, Ports: []discoveryv1.EndpointPort{port("", 80, tcp)}, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"fd00::1"}}}}, "",
			[]string{"[fd00::1]:80"}},
		"fqdn": {discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeFQDN, Ports: []discoveryv1.EndpointPort{port("", 80, tcp)}, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"db.example.com"}}}}, "", nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := readyAddrs(&tt.slice, tt.port); !slices.Equal(got, tt.want) {
				t.Errorf("readyAddrs = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRouter: previewd's proxy forwards a preview host's request to a
// ready endpoint of the environment's Service (an EndpointSlice made by
// hand, as the endpoint slice controller would, pointing at an httptest
// server on 127.0.0.1), and serves nothing when the endpoint is not ready, when the
// environment sleeps, or when it has no slice; other instances' slices are
// never used. Without the option there is no Router.
func TestRouter(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, ok := f.runtime(Options{}).Router(); ok {
		t.Fatal("a Router without runtime.kubernetes.proxy")
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app %s %s fwd=%s", r.Host, r.URL.Path, r.Header.Get("X-Forwarded-Host"))
	}))
	defer app.Close()
	_, p, _ := net.SplitHostPort(app.Listener.Addr().String())
	appPort, _ := strconv.Atoi(p)
	// The API server refuses loopback endpoints: the slice names a
	// documentation address (TEST-NET-1) that the proxy's dialer takes to
	// 127.0.0.1.
	const podIP = "192.0.2.10"
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, _ := net.SplitHostPort(addr)
		if host == podIP {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return d.DialContext(ctx, network, addr)
	}

	inst := uniqueKey("proxy")
	rt := f.runtime(Options{Instance: inst, ProxyService: "web", ProxyPort: "http", ProxyDial: dial})
	router, ok := rt.Router()
	if !ok {
		t.Fatal("no Router")
	}
	t.Cleanup(func() { router.Close() })
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := router.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}

	key := uniqueKey("px")
	ns := "preview-" + key
	f.cleanup(ns)
	f.markAvailable(ns)
	rel := release(key, sha('9'))
	if _, ok := router.Proxy(key); ok {
		t.Fatal("served before the environment exists")
	}
	if err := rt.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	// The Service exists, but the slice does not yet.
	if _, ok := router.Proxy(key); ok {
		t.Fatal("served without an endpoint slice")
	}

	slice := func(name, instance string, ready bool, port int) *discoveryv1.EndpointSlice {
		pn, pp, tcp := "http", int32(port), corev1.ProtocolTCP
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
				LabelManagedBy: ManagedBy, LabelEnv: key, LabelInstance: instance, discoveryv1.LabelServiceName: "web",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &pn, Port: &pp, Protocol: &tcp}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{podIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		}
	}
	// Another instance's slice for the same key (pointing nowhere) is
	// never used.
	if _, err := f.cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-other", inst+"-other", true, 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	es, err := f.cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-abcde", inst, true, appPort), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := waitProxy(t, router, key, true)
	host := key + ".preview.example.com"
	for range 3 {
		req := httptest.NewRequest("GET", "http://"+host+"/cart", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Body)
		if want := "app " + host + " /cart fwd=" + host; rec.Code != http.StatusOK || string(body) != want {
			t.Fatalf("proxied = %d %q, want %q", rec.Code, body, want)
		}
	}

	// Not ready: not served.
	es.Endpoints[0].Conditions.Ready = ptr(false)
	if es, err = f.cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitProxy(t, router, key, false)
	es.Endpoints[0].Conditions.Ready = ptr(true)
	if _, err = f.cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitProxy(t, router, key, true)

	// Asleep: not served, though the (hand-made) slice still lists the
	// endpoint; the wake serves it again once rolled out.
	if err := rt.Sleep(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitProxy(t, router, key, false)
	if err := rt.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	waitProxy(t, router, key, true)

	// An endpoint that does not answer: 502.
	app.Close()
	rec := httptest.NewRecorder()
	waitProxy(t, router, key, true).ServeHTTP(rec, httptest.NewRequest("GET", "http://"+host+"/", nil))
	if rec.Code != http.StatusBadGateway {
		t.Errorf("proxied to a closed endpoint = %d", rec.Code)
	}
}

// waitProxy polls until router serves key (want) or not, and returns the
// handler.
func waitProxy(t *testing.T, router *Router, key string, want bool) http.Handler {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, ok := router.Proxy(key)
		if ok == want {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("Proxy(%s) = %v after 30s, want %v", key, ok, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
