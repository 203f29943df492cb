package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/kubetest"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestMain stops the shared Kubernetes control plane and the shared
// PostgreSQL cluster, whichever the tests started.
func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.CloseShared()
	pgtest.CloseShared()
	os.Exit(code)
}

// TestArgoCDMode runs previewd serve with runtime.kind argocd against a
// real API server: each branch gets its namespace and Secret, the plugin
// generator lists it, and /readyz answers.
func TestArgoCDMode(t *testing.T) {
	cp := kubetest.Shared(t)
	dir := t.TempDir()
	repo, kc := repoAndKubeconfig(t, cp, dir, "feature-x")
	suffix := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	// The lease is long enough that a loaded API server does not cost
	// the only instance its leadership (which ends the daemon).
	yaml := fmt.Sprintf(`
domain: preview.example.com
forge: {git: {url: %s, pollInterval: 200ms}}
database: {kind: none}
runtime:
  kind: argocd
  kubernetes:
    kubeconfig: %s
    namespace: "d%s-{{.Key}}"
    productionNamespace: "d%s-production"
    image: "ghcr.io/acme/shop:{{.SHA}}"
    leaderElection: {enabled: true, namespace: default, name: "previewd-%s", leaseDuration: 15s, renewDeadline: 10s, retryPeriod: 500ms}
    argocd: {token: t0ken}
`, repo, kc, suffix, suffix, suffix)
	cfg, err := config.Parse([]byte(yaml), dir, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(dir, "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := New(ctx, cfg, Options{Listener: ln, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	cs := kubernetes.NewForConfigOrDie(cp.Config())
	t.Cleanup(func() {
		cancel()
		<-done
		for _, ns := range []string{"d" + suffix + "-feature-x", "d" + suffix + "-production"} {
			cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	base := "http://" + ln.Addr().String()

	get := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Ready once every key of the first listing was reconciled.
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		code, body := get("GET", "/readyz", "", "")
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || time.Since(start) > 30*time.Second {
			t.Fatalf("/readyz = %d %s", code, body)
		}
	}
	var params []map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		code, body := get("POST", "/api/v1/getparams.execute", "t0ken", `{"applicationSetName":"x","input":{"parameters":{}}}`)
		if code != http.StatusOK {
			t.Fatalf("getparams = %d %s", code, body)
		}
		var resp struct {
			Output struct {
				Parameters []map[string]string `json:"parameters"`
			} `json:"output"`
		}
		json.Unmarshal([]byte(body), &resp)
		if params = resp.Output.Parameters; len(params) == 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(params) != 1 || params[0]["key"] != "feature-x" || params[0]["namespace"] != "d"+suffix+"-feature-x" || params[0]["secret"] != "previewd-env" {
		t.Fatalf("parameters = %v", params)
	}
	if _, err := cs.CoreV1().Secrets("d"+suffix+"-feature-x").Get(context.Background(), "previewd-env", metav1.GetOptions{}); err != nil {
		t.Errorf("the Secret: %v", err)
	}
	if code, _ := get("POST", "/api/v1/getparams.execute", "", "{}"); code != http.StatusUnauthorized {
		t.Errorf("getparams without token = %d", code)
	}
	// Only the kubernetes runtime runs: the logs are not some local
	// runtime's empty tail but a 404 that says why.
	if code, body := get("GET", "/api/v1/environments/feature-x/logs", "", ""); code != http.StatusNotFound || !strings.Contains(body, "no logs") {
		t.Errorf("logs = %d %s", code, body)
	}
	// Without a url template, an environment on Kubernetes is reached
	// over https on its host.
	if e, err := d.Store().Get(ctx, "feature-x"); err != nil || e.URL != "https://feature-x.preview.example.com" {
		t.Errorf("url = %q, %v", e.URL, err)
	}
}

// repoAndKubeconfig makes, under dir, a git repository with main and one
// more branch, and an admin kubeconfig for cp.
func repoAndKubeconfig(t *testing.T, cp *kubetest.ControlPlane, dir, branch string) (repo, kubeconfig string) {
	t.Helper()
	repo = filepath.Join(dir, "repo")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", repo},
		{"-C", repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"},
		{"-C", repo, "branch", branch},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, cp.AdminToken); err != nil {
		t.Fatal(err)
	}
	return repo, kubeconfig
}

// TestArgoCDRestartWithEmptyDataDir: previewd in argocd mode restarts with
// an empty data dir (the chart's persistence.enabled=false). Argo CD polls
// the plugin generator all the while; it must never get a 200 that leaves
// out a live environment (it would delete that Application and all its
// objects). Before the first full reconcile the generator answers 503,
// and so does /readyz.
func TestArgoCDRestartWithEmptyDataDir(t *testing.T) {
	cp := kubetest.Shared(t)
	dir := t.TempDir()
	repo, kc := repoAndKubeconfig(t, cp, dir, "feature-x")
	suffix := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	yaml := fmt.Sprintf(`
domain: preview.example.com
forge: {git: {url: %s, pollInterval: 200ms}}
database: {kind: none}
runtime:
  kind: argocd
  kubernetes:
    kubeconfig: %s
    namespace: "r%s-{{.Key}}"
    productionNamespace: "r%s-production"
    image: "ghcr.io/acme/shop:{{.SHA}}"
    argocd: {token: "t0ken\n"}   # as read from a Secret file, with its newline
`, repo, kc, suffix, suffix)
	cs := kubernetes.NewForConfigOrDie(cp.Config())
	t.Cleanup(func() {
		for _, ns := range []string{"r" + suffix + "-feature-x", "r" + suffix + "-production"} {
			cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	// start runs previewd on a fresh data dir and returns its address and
	// a stop function.
	start := func(dataDir string) (string, func()) {
		cfg, err := config.Parse([]byte(yaml), dir, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir = dataDir
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		d, err := New(ctx, cfg, Options{Listener: ln, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		return "http://" + ln.Addr().String(), func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	// params asks the generator as Argo CD does; it returns the status
	// and the keys listed.
	params := func(base string) (int, []string) {
		req, _ := http.NewRequest("POST", base+"/api/v1/getparams.execute", strings.NewReader(`{"applicationSetName":"previews","input":{"parameters":{}}}`))
		req.Header.Set("Authorization", "Bearer t0ken") // Argo CD trims its side
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil // not listening yet
		}
		defer resp.Body.Close()
		var out struct {
			Output struct {
				Parameters []map[string]string `json:"parameters"`
			} `json:"output"`
		}
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		var keys []string
		for _, p := range out.Output.Parameters {
			keys = append(keys, p["key"])
		}
		return resp.StatusCode, keys
	}
	listed := func(keys []string, key string) bool {
		for _, k := range keys {
			if k == key {
				return true
			}
		}
		return false
	}
	// watch polls until the environment is listed; after a restart, a
	// 200 that leaves it out fails the test.
	watch := func(base string, wantAll bool) {
		t.Helper()
		saw503 := false
		for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
			code, keys := params(base)
			switch code {
			case http.StatusServiceUnavailable:
				saw503 = true
			case http.StatusOK:
				both := listed(keys, "feature-x")
				if both {
					if wantAll && !saw503 {
						t.Logf("the first reconcile was done before the first poll")
					}
					return
				}
				if wantAll {
					t.Fatalf("after a restart with an empty data dir the generator answered 200 with %v: Argo CD would delete the others", keys)
				}
			case 0:
			default:
				t.Fatalf("generator answered %d", code)
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("never listed feature-x (last: %d %v)", code, keys)
			}
		}
	}
	base, stop := start(filepath.Join(dir, "data1"))
	watch(base, false)
	stop()
	// The pod comes back without its volume: an empty data dir.
	base, stop = start(filepath.Join(dir, "data2"))
	defer stop()
	watch(base, true)
}
