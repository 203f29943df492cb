// Package kubetest starts a real Kubernetes control plane for tests: etcd,
// kube-apiserver and kube-controller-manager on 127.0.0.1, on free ports,
// from binaries built by scripts/k8s-testbed.sh. There is no kubelet: Pods
// stay Pending and nothing becomes Available on its own, but server-side
// apply, namespace deletion and garbage collection really happen.
//
// The API server authenticates with static tokens: AdminToken (group
// system:masters) and UserToken (user "previewd", no groups, so RBAC
// applies to it).
//
// Typical use, once per test package:
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		cp := kubetest.Shared(t) // skips, or fails in CI, without binaries
//		cs := kubernetes.NewForConfigOrDie(cp.Config())
//		...
//	}
//
// The binaries are looked for in $KUBEBUILDER_ASSETS, then in the cache
// directory the script builds into.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/previewd/previewd/internal/testsvc"
)

// The versions scripts/k8s-testbed.sh builds by default; they name the
// cache directory.
const (
	K8sVersion  = "1.34.2"
	EtcdVersion = "3.6.4"
)

// ErrNotInstalled is returned (wrapped) by Start when the binaries are
// missing.
var ErrNotInstalled = errors.New("kubetest: control-plane binaries not built (run scripts/k8s-testbed.sh)")

// UserName is the non-admin user of UserToken.
const UserName = "previewd"

// Controllers are the kube-controller-manager controllers started: what
// namespace deletion and garbage collection need. Deployments are left to
// the tests (nothing would become Available without a kubelet anyway).
var Controllers = []string{
	"namespace-controller", "garbage-collector-controller", "serviceaccount-controller",
	"serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
}

// Assets returns the directory holding the binaries.
func Assets() (string, error) {
	var dirs []string
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		dirs = append(dirs, d)
	}
	root := os.Getenv("PREVIEWD_K8S_CACHE")
	if root == "" {
		c, err := os.UserCacheDir()
		if err == nil {
			root = filepath.Join(c, "previewd-k8s")
		}
	}
	if root != "" {
		dirs = append(dirs, filepath.Join(root, "k8s-"+K8sVersion+"-etcd-"+EtcdVersion))
	}
	for _, d := range dirs {
		ok := true
		for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
			if st, err := os.Stat(filepath.Join(d, b)); err != nil || st.IsDir() {
				ok = false
			}
		}
		if ok {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: looked in %s", ErrNotInstalled, strings.Join(dirs, ", "))
}

// ControlPlane is a running etcd, kube-apiserver and
// kube-controller-manager.
type ControlPlane struct {
	// AdminToken and UserToken are the bearer tokens of the admin and of
	// the non-admin user.
	AdminToken, UserToken string
	// URL is the API server's address (https).
	URL string

	dir   string
	etcd  string
	procs []*testsvc.Process
}

// Options configure Start.
type Options struct {
	// Controllers replace the default Controllers.
	Controllers []string
	// ExtraAPIServerArgs are added to kube-apiserver's command line.
	ExtraAPIServerArgs []string
}

// Start starts a control plane in a temporary directory and waits until
// the API server is ready.
func Start(ctx context.Context, o Options) (*ControlPlane, error) {
	bin, err := Assets()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{dir: dir, AdminToken: token(), UserToken: token()}
	if err := cp.start(ctx, bin, o); err != nil {
		logs := cp.Logs()
		cp.Close()
		return nil, fmt.Errorf("%w\n%s", err, logs)
	}
	return cp, nil
}

func token() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (cp *ControlPlane) start(ctx context.Context, bin string, o Options) error {
	if err := cp.writeFiles(); err != nil {
		return err
	}
	// Free ports can be taken between finding and binding: try again
	// with new ones.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = cp.startEtcd(ctx, bin); err == nil {
			break
		}
		cp.stopAll()
	}
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 3; attempt++ {
		if err = cp.startAPIServer(ctx, bin, o); err == nil {
			break
		}
		if p := cp.procs[len(cp.procs)-1]; p.Name() == "kube-apiserver" {
			stop(p)
			cp.procs = cp.procs[:len(cp.procs)-1]
		}
	}
	if err != nil {
		return err
	}
	return cp.startControllerManager(bin, o)
}

func (cp *ControlPlane) path(name string) string { return filepath.Join(cp.dir, name) }

func (cp *ControlPlane) writeFiles() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	tokens := fmt.Sprintf("%s,admin,admin-uid,system:masters\n%s,%s,%s-uid\n", cp.AdminToken, cp.UserToken, UserName, UserName)
	for name, data := range map[string][]byte{"sa.key": priv, "sa.pub": pub, "tokens.csv": []byte(tokens)} {
		if err := os.WriteFile(cp.path(name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (cp *ControlPlane) spawn(name, path string, args ...string) (*testsvc.Process, error) {
	cmd := exec.Command(path, args...)
	cmd.Dir = cp.dir
	// The log is appended to: a retried start keeps what the failed
	// attempt said.
	p, err := testsvc.Start(cmd, testsvc.Options{Log: cp.path(name + ".log"), Append: true, DeathSignal: syscall.SIGKILL})
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, p)
	return p, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context, bin string) error {
	client, err := testsvc.FreePort()
	if err != nil {
		return err
	}
	peer, err := testsvc.FreePort()
	if err != nil {
		return err
	}
	c := "http://127.0.0.1:" + strconv.Itoa(client)
	pu := "http://127.0.0.1:" + strconv.Itoa(peer)
	data := cp.path("etcd")
	os.RemoveAll(data)
	p, err := cp.spawn("etcd", filepath.Join(bin, "etcd"),
		"--name=default", "--data-dir="+data,
		"--listen-client-urls="+c, "--advertise-client-urls="+c,
		"--listen-peer-urls="+pu, "--initial-advertise-peer-urls="+pu,
		"--initial-cluster=default="+pu,
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	cp.etcd = c
	return waitHTTP(ctx, p, http.DefaultClient, c+"/health", "", 30*time.Second)
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, bin string, o Options) error {
	port, err := testsvc.FreePort()
	if err != nil {
		return err
	}
	args := []string{
		"--etcd-servers=" + cp.etcd,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + cp.path("certs"),
		"--token-auth-file=" + cp.path("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + cp.path("sa.pub"),
		"--service-account-signing-key-file=" + cp.path("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--profiling=false",
	}
	args = append(args, o.ExtraAPIServerArgs...)
	p, err := cp.spawn("kube-apiserver", filepath.Join(bin, "kube-apiserver"), args...)
	if err != nil {
		return err
	}
	cp.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	return waitHTTP(ctx, p, hc, cp.URL+"/readyz", cp.AdminToken, 90*time.Second)
}

func (cp *ControlPlane) startControllerManager(bin string, o Options) error {
	kc := cp.path("admin.kubeconfig")
	if err := cp.WriteKubeconfig(kc, cp.AdminToken); err != nil {
		return err
	}
	ctrl := o.Controllers
	if len(ctrl) == 0 {
		ctrl = Controllers
	}
	_, err := cp.spawn("kube-controller-manager", filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+kc, "--leader-elect=false",
		"--controllers="+strings.Join(ctrl, ","),
		"--service-account-private-key-file="+cp.path("sa.key"),
		"--root-ca-file="+cp.path("certs/apiserver.crt"),
		"--secure-port=0")
	return err
}

// waitHTTP polls url until it answers 200, the process exits, or the
// timeout passes.
func waitHTTP(ctx context.Context, p *testsvc.Process, hc *http.Client, url, token string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error // set before it is read: a request is made first
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited: %v", p.Name(), p.State())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w", p.Name(), timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Config returns a client config with the admin token.
func (cp *ControlPlane) Config() *rest.Config { return cp.ConfigFor(cp.AdminToken) }

// UserConfig returns a client config of the non-admin user.
func (cp *ControlPlane) UserConfig() *rest.Config { return cp.ConfigFor(cp.UserToken) }

// ConfigFor returns a client config with the given bearer token.
func (cp *ControlPlane) ConfigFor(token string) *rest.Config {
	return &rest.Config{
		Host:            cp.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             1000,
		Burst:           2000,
	}
}

// WriteKubeconfig writes a kubeconfig file for the given token.
func (cp *ControlPlane) WriteKubeconfig(path, token string) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: user
  user:
    token: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: user}
current-context: kubetest
`, cp.URL, token)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// Logs returns the end of every process's log.
func (cp *ControlPlane) Logs() string {
	var b bytes.Buffer
	for _, p := range cp.procs {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.Name(), p.LogTail(4000))
	}
	return b.String()
}

// Close stops the processes, newest first, and removes the directory.
func (cp *ControlPlane) Close() error {
	cp.stopAll()
	return os.RemoveAll(cp.dir)
}

func (cp *ControlPlane) stopAll() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		stop(cp.procs[i])
	}
	cp.procs = nil
}

// stop stops p with SIGTERM, killing it after 10 s (which is no error
// here: the control plane is thrown away).
func stop(p *testsvc.Process) {
	_ = p.Stop(syscall.SIGTERM, 10*time.Second)
}

var shared = &testsvc.Shared[*ControlPlane]{
	Start:        func(ctx context.Context) (*ControlPlane, error) { return Start(ctx, Options{}) },
	Timeout:      3 * time.Minute,
	NotInstalled: ErrNotInstalled,
}

// Shared returns the control plane shared by the tests of this process, starting
// it on first use. Without the binaries it skips the test, or fails it when
// the CI variable is set (in CI a test that needs a server must run). Use
// Main (or CloseShared) in TestMain so it is stopped at the end.
func Shared(t testing.TB) *ControlPlane {
	t.Helper()
	return shared.Get(t)
}

// CloseShared stops the shared control plane, if one was started.
func CloseShared() { shared.Close() }

// SkipOrFatal ends the test for err: a skip if err is ErrNotInstalled and
// the CI variable is unset (or "false" or "0"), else a failure.
func SkipOrFatal(t testing.TB, err error) {
	t.Helper()
	testsvc.SkipOrFatal(t, err, ErrNotInstalled)
}

// InCI reports whether the CI environment variable says the tests run in
// continuous integration.
func InCI() bool { return testsvc.InCI() }

// Main runs the tests and then stops the shared control plane, if one was
// started. Use it as: func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	CloseShared()
	return code
}
