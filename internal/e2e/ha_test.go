package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/daemon"
	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/kubetest"
	"github.com/previewd/previewd/internal/pgtest"
)

// replica is one previewd serve process of an HA pair.
type replica struct {
	t       testing.TB
	cmd     *exec.Cmd
	api     *api
	logPath string
}

// startReplica starts previewd serve with yaml plus its own listen address
// and data dir.
func startReplica(t testing.TB, name, yaml string) *replica {
	t.Helper()
	_, bin := binaries(t)
	dir := t.TempDir()
	port := freePort(t)
	yaml = fmt.Sprintf("listen: 127.0.0.1:%d\ndataDir: %q\n", port, filepath.Join(dir, "data")) + yaml
	cfg := filepath.Join(dir, "previewd.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &replica{t: t, logPath: filepath.Join(dir, "previewd.log"),
		api: &api{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 5 * time.Second}}}
	logf, err := os.Create(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", "--config", cfg)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Signal(syscall.SIGTERM)
			r.cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(r.logPath)
			t.Logf("%s's log:\n%s", name, b)
		}
	})
	return r
}

// kill kills the replica with SIGKILL: no lease release, no cleanup.
func (r *replica) kill() {
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.cmd.Wait()
}

// code returns the HTTP status of GET path.
func (r *replica) code(path string) int {
	resp, err := r.api.client.Get(r.api.base + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// listing returns "key status sha" of every environment the replica lists.
func (r *replica) listing() (string, int) {
	var body struct {
		Environments []env.Environment `json:"environments"`
	}
	code := r.api.getJSON("/api/v1/environments", &body)
	var out []string
	for _, e := range body.Environments {
		out = append(out, fmt.Sprintf("%s %s %s", e.Key, e.Status, env.ShortSHA(e.SHA)))
	}
	sort.Strings(out)
	return strings.Join(out, ", "), code
}

// TestHighAvailability is the shared store's "done when": two previewd
// processes share a PostgreSQL store, one PostgreSQL server for the
// environments' databases and one kube-apiserver. The Lease picks one
// leader; the other serves the same API and is ready. The leader is killed
// with SIGKILL while it is rolling a branch out; the other takes the Lease
// over with the whole inventory: the branch, deleted after the kill, is
// torn down completely (namespace and schema and role), and a branch
// pushed after the kill is deployed. There is no kubelet: the test plays
// the deployment controller for the namespaces that may roll out, and
// never for the one being killed in.
func TestHighAvailability(t *testing.T) {
	cp := kubetest.Shared(t)
	pg := pgtest.Shared(t)
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, cp.AdminToken); err != nil {
		t.Fatal(err)
	}
	storeDB, appDB := pg.NewDatabase(t), pg.NewDatabase(t)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1000000, 36)
	doomed, later := "ha-doomed-"+suffix, "ha-later-"+suffix
	prodNS, lease := "ha-prod-"+suffix, "previewd-ha-"+suffix
	r := newRepo(t)
	r.commit("main", nil)
	doomedSHA := r.commit(doomed, map[string]string{"banner.txt": "doomed"})
	// Production and the later branch roll out; the doomed one never does.
	// The lease (below) is long enough that a loaded API server does not
	// cost the leader its leadership, which ends it; the standby takes
	// over once the killed leader's lease has run out.
	kubetest.MarkAvailable(t, cs, prodNS, "ha-"+later)

	yaml := fmt.Sprintf(`
domain: preview.test
forge:
  kind: git
  git: {url: %q, pollInterval: 1h, productionBranch: main}
store:
  kind: postgres
  postgres: {url: %q}
database:
  kind: postgres
  postgres: {adminURL: %q, passwordSecret: ha-test-secret-0123456789abcdef}
runtime:
  kind: kubernetes
  kubernetes:
    kubeconfig: %q
    manifests: %q
    namespace: "ha-{{.Key}}"
    productionNamespace: %q
    image: "registry.example/markdown-editor:{{.SHA}}"
    rolloutTimeout: 10m
    leaderElection: {enabled: true, namespace: default, name: %q, leaseDuration: 10s, renewDeadline: 7s, retryPeriod: 250ms}
`, r.bare, pg.AdminURLFor(storeDB), pg.AdminURLFor(appDB), kubeconfig,
		filepath.Join(moduleRoot(), "examples", "markdown-editor", "deploy", "preview"), prodNS, lease)
	replicas := []*replica{startReplica(t, "replica 0", yaml), startReplica(t, "replica 1", yaml)}

	// The Lease picks one: its holder names a replica's pid.
	var leader, standby *replica
	eventually(t, 60*time.Second, func() string {
		l, err := cs.CoordinationV1().Leases("default").Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		holder := ""
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		for i, rp := range replicas {
			if strings.HasSuffix(holder, "_"+strconv.Itoa(rp.cmd.Process.Pid)) {
				leader, standby = rp, replicas[1-i]
				return ""
			}
		}
		return "lease held by " + holder
	})

	// The leader deploys production and starts rolling the doomed branch
	// out (it waits for an Available Deployment that never comes).
	leader.api.waitStatus(env.ProductionKey, env.StatusReady, "")
	eventually(t, 60*time.Second, func() string {
		e, code := leader.api.environment(doomed)
		if code != http.StatusOK || e.SHA != doomedSHA || e.Status != env.StatusStarting {
			return fmt.Sprintf("%s: HTTP %d, %s at %s", doomed, code, e.Status, env.ShortSHA(e.SHA))
		}
		if _, err := cs.AppsV1().Deployments("ha-"+doomed).Get(ctx, "markdown-editor", metav1.GetOptions{}); err != nil {
			return "deployment: " + err.Error()
		}
		return ""
	})
	role := "preview_" + strings.ReplaceAll(doomed, "-", "_")
	exists := func(q string) bool {
		conn, err := pg.Connect(ctx, appDB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var ok bool
		if err := conn.QueryRow(ctx, q, role).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	const roleQ = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)"
	const schemaQ = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)"
	if !exists(roleQ) || !exists(schemaQ) {
		t.Fatalf("role or schema %s missing while rolling out", role)
	}

	// The standby serves the same environments from the shared store and
	// is ready.
	eventually(t, 30*time.Second, func() string {
		l, lc := leader.listing()
		s, sc := standby.listing()
		if lc != http.StatusOK || sc != http.StatusOK || l != s {
			return fmt.Sprintf("leader (HTTP %d) lists %q; standby (HTTP %d) lists %q", lc, l, sc, s)
		}
		if !strings.Contains(s, doomed+" starting") {
			return "standby lists " + s
		}
		if c := standby.code("/readyz"); c != http.StatusOK {
			return fmt.Sprintf("standby /readyz: HTTP %d", c)
		}
		return ""
	})

	// Kill the leader mid-rollout; then delete the doomed branch and push
	// a new one.
	leader.kill()
	r.deleteBranch(doomed)
	laterSHA := r.commit(later, map[string]string{"banner.txt": "later"})

	// The standby takes over: the new branch is deployed, and the doomed
	// one is torn down from the inventory the killed leader recorded.
	a := standby.api
	a.waitStatus(later, env.StatusReady, laterSHA)
	a.waitGone(doomed)
	eventually(t, 60*time.Second, func() string {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, "ha-"+doomed, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Sprintf("namespace ha-%s: %v", doomed, err)
		}
		if exists(roleQ) || exists(schemaQ) {
			return "role or schema " + role + " still exists"
		}
		return ""
	})
	l, err := cs.CoordinationV1().Leases("default").Get(ctx, lease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || !strings.HasSuffix(*l.Spec.HolderIdentity, "_"+strconv.Itoa(standby.cmd.Process.Pid)) {
		t.Errorf("lease after the takeover: %v %+v", err, l)
	}
	if c := standby.code("/readyz"); c != http.StatusOK {
		t.Errorf("new leader /readyz: HTTP %d", c)
	}
}

// TestServeKeepsWhatDBCreateMadeAndOtherInstances: serve, `previewd db
// create` (the CI flow) and another project's previewd share one
// PostgreSQL server. Serve's orphan collection removes its own orphan and
// neither what db create made (DESIGN: it belongs to db create until db
// drop) nor the other instance's.
func TestServeKeepsWhatDBCreateMadeAndOtherInstances(t *testing.T) {
	pg := pgtest.Shared(t)
	app, previewd := binaries(t)
	ctx := context.Background()
	db := pg.NewDatabase(t)
	r := newRepo(t)
	r.commit("main", nil)
	yaml := strings.Replace(configYAML(t.TempDir(), r.bare, app, ""), "database:\n  kind: sqlite\n", fmt.Sprintf(
		"database:\n  kind: postgres\n  postgres: {adminURL: %q, passwordSecret: shared-test-secret-0123456789abcdef}\n", pg.AdminURLFor(db)), 1)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "previewd.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	suffix := strconv.FormatInt(time.Now().UnixNano()%1000000, 36)
	orphan, ci, other := "gone-"+suffix, "ci-"+suffix, "other-"+suffix
	ensure := func(yaml, key string) database.Provider {
		cfg, err := config.Parse([]byte(yaml), dir, os.LookupEnv)
		if err != nil {
			t.Fatal(err)
		}
		p, err := daemon.OpenDatabase(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := p.(interface{ Close() }); ok {
			t.Cleanup(c.Close)
		}
		if _, err := p.Ensure(ctx, database.Target{Key: key}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// What a crash of this serve left unrecorded, and another project's.
	ensure(yaml, orphan)
	otherP := ensure(yaml+"instance: other-project\n", other)
	t.Cleanup(func() {
		if err := otherP.Drop(context.Background(), otherP.Items(database.Target{Key: other})); err != nil {
			t.Error(err)
		}
	})
	if out, err := exec.Command(previewd, "db", "create", "--key", ci, "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("db create: %v\n%s", err, out)
	}
	role := func(key string) bool {
		c, err := pg.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var ok bool
		if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", "preview_"+strings.ReplaceAll(key, "-", "_")).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	in := start(t, yaml)
	in.api().waitStatus(env.ProductionKey, env.StatusReady, "")
	eventually(t, 60*time.Second, func() string {
		if role(orphan) {
			return "serve's orphan " + orphan + " is not collected"
		}
		return ""
	})
	if !role(ci) {
		t.Errorf("serve collected what db create made")
	}
	if !role(other) {
		t.Errorf("serve collected another instance's")
	}
	if out, err := exec.Command(previewd, "db", "drop", "--key", ci, "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("db drop: %v\n%s", err, out)
	}
	if role(ci) {
		t.Errorf("db drop left the role")
	}
}
