package config

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/tmpl"
)

// Kubernetes configures the kubernetes runtime (each environment is a
// namespace whose objects previewd applies) and the argocd runtime
// (previewd provisions the namespace, the Secret and the database; Argo CD
// applies the app through the plugin generator).
//
// Every template below (and every manifest and the migrate Job) is a Go
// template over the environment, internal/tmpl's Data: .Key .Kind .Number
// .Branch .BranchSlug .SHA .ShortSHA .Host .URL .Image .Namespace
// .SecretName .Production; with the functions quote, lower, upper, trunc
// and default.
type Kubernetes struct {
	// Kubeconfig is the path of a kubeconfig file. Empty means the
	// in-cluster config (the pod's service account).
	Kubeconfig string `yaml:"kubeconfig"`
	// Context is the kubeconfig context to use. Default: its current one.
	Context string `yaml:"context"`
	// Manifests is a directory of YAML files, each a Go template; or a
	// directory with a kustomization.yaml, whose resources are rendered
	// the same way. Required for kind kubernetes.
	//
	// A relative path (e.g. deploy/preview) is a directory inside the
	// app's repository, read at each environment's own commit from the
	// object cache, so a change to the manifests is previewed with them;
	// an untrusted change (a fork) is rendered with the production
	// branch's manifests instead, never its own. An absolute path is a
	// directory of previewd's machine (e.g. a mounted ConfigMap), read
	// again at every reconcile. Either way, an object that leaves the
	// templates is pruned at the next apply.
	Manifests string `yaml:"manifests"`
	// Namespace is the template of an environment's namespace. Default
	// preview-{{.Key}}.
	Namespace string `yaml:"namespace"`
	// ProductionNamespace is production's namespace. Default production.
	ProductionNamespace string `yaml:"productionNamespace"`
	// Image is the template of the app's image, over the SHA, e.g.
	// ghcr.io/acme/shop:{{.SHA}}, so a new commit always rolls out a new
	// image. Optional: manifests may name images themselves.
	Image string `yaml:"image"`
	// WaitForImage makes previewd check that the image exists in its
	// registry before anything else; until it does, the environment is
	// pending "waiting for image".
	WaitForImage bool `yaml:"waitForImage"`
	// ImagePollInterval is how often a missing image is looked for again.
	// Default 15s.
	ImagePollInterval Duration `yaml:"imagePollInterval"`
	// PullSecrets are "namespace/name" of kubernetes.io/dockerconfigjson
	// Secrets used to reach the registry, besides the docker config of
	// previewd's own user.
	PullSecrets []string `yaml:"pullSecrets"`
	// URL is an optional template of the environment's URL. Default: the
	// host of the first Ingress rule (https when its TLS covers it), else
	// the top-level url, else https://<key>.<domain>.
	URL string `yaml:"url"`
	// RolloutTimeout bounds the wait for every Deployment to be Available.
	// Default 5m.
	RolloutTimeout Duration `yaml:"rolloutTimeout"`
	// DeleteTimeout bounds the wait for a namespace to be gone; after it
	// the teardown is retried. Default 2m.
	DeleteTimeout Duration `yaml:"deleteTimeout"`
	// Migrate runs migrations as a Job before each apply.
	Migrate KubeMigrate `yaml:"migrate"`
	// LeaderElection lets several replicas run while only one reconciles.
	LeaderElection LeaderElection `yaml:"leaderElection"`
	// QPS and Burst limit previewd's requests to the API server.
	// Defaults 100 and 200.
	QPS   float32 `yaml:"qps"`
	Burst int     `yaml:"burst"`
	// ArgoCD configures the ApplicationSet plugin generator endpoint.
	ArgoCD ArgoCD `yaml:"argocd"`
	// Proxy makes previewd's own proxy serve the preview hosts (kind
	// kubernetes): route them to previewd (a wildcard Ingress for
	// *.<domain> to previewd's Service) and previewd forwards each request
	// to a ready endpoint of the environment's Service, so that a request
	// to a sleeping preview wakes it. Off by default: the manifests' own
	// Ingress serves the preview hosts.
	Proxy KubeProxy `yaml:"proxy"`
}

// KubeProxy names the Service of each environment that previewd's proxy
// forwards to, e.g. {service: web, port: http}. previewd watches the
// EndpointSlices of its environments' Services (their labels are copied
// from the Service), so a request asks nothing of the API server.
type KubeProxy struct {
	// Service is the name of the environment's Service, as the manifests
	// name it in the environment's namespace (e.g. web). Empty: previewd
	// does not proxy.
	Service string `yaml:"service"`
	// Port is the Service port to forward to: its name, or the number of
	// the port the endpoints listen on (the Service's targetPort). Empty:
	// the Service's only port.
	Port string `yaml:"port"`
}

// KubeMigrate configures the migration Job.
type KubeMigrate struct {
	// Command is the container command of the Job, run in the release's
	// image with the environment's Secret as its environment, e.g.
	// ["./app", "migrate"]. Default: the top-level migrate as "sh -c".
	// A commit whose .previewd.yaml sets another migrate runs that one
	// instead, as "/bin/sh -c" (an empty one: no Job).
	Command []string `yaml:"command"`
	// Job is a file holding a Job template; it replaces the generated
	// Job. Its name should include {{.ShortSHA}}. Like manifests, a
	// relative path is inside the app's repository (read at each commit)
	// and an absolute one is a file of previewd's machine.
	Job string `yaml:"job"`
	// Timeout bounds the wait for the Job. Default 10m.
	Timeout Duration `yaml:"timeout"`
}

// LeaderElection configures the Lease that makes one replica the leader.
type LeaderElection struct {
	// Enabled turns leader election on. Default false.
	Enabled bool `yaml:"enabled"`
	// Namespace of the Lease. Default: the pod's namespace, else default.
	Namespace string `yaml:"namespace"`
	// Name of the Lease. Default previewd.
	Name string `yaml:"name"`
	// LeaseDuration, RenewDeadline and RetryPeriod are the usual client-go
	// settings. Defaults 15s, 10s, 2s.
	LeaseDuration Duration `yaml:"leaseDuration"`
	RenewDeadline Duration `yaml:"renewDeadline"`
	RetryPeriod   Duration `yaml:"retryPeriod"`
}

// ArgoCD configures the plugin generator (POST /api/v1/getparams.execute).
type ArgoCD struct {
	// Token is the bearer token Argo CD sends. Required for kind argocd;
	// use ${VAR}.
	Token string `yaml:"token"`
}

func (k *Kubernetes) setDefaults(c *Config) {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	defDur := func(p *Duration, v time.Duration) {
		if p.Duration == 0 {
			p.Duration = v
		}
	}
	def(&k.Namespace, "preview-{{.Key}}")
	def(&k.ProductionNamespace, "production")
	defDur(&k.ImagePollInterval, 15*time.Second)
	defDur(&k.RolloutTimeout, 5*time.Minute)
	defDur(&k.DeleteTimeout, 2*time.Minute)
	defDur(&k.Migrate.Timeout, 10*time.Minute)
	def(&k.LeaderElection.Name, "previewd")
	defDur(&k.LeaderElection.LeaseDuration, 15*time.Second)
	defDur(&k.LeaderElection.RenewDeadline, 10*time.Second)
	defDur(&k.LeaderElection.RetryPeriod, 2*time.Second)
	if k.QPS == 0 {
		k.QPS = 100
	}
	if k.Burst == 0 {
		k.Burst = 200
	}
	if k.Kubeconfig != "" {
		k.Kubeconfig = c.Path(expandHome(k.Kubeconfig))
	}
}

// serviceName is a Service's name (an RFC 1035 label).
var serviceName = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// portName is the shape of a Service port's name (see validPortName).
var portName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// validPort reports whether s is a port number, or can name a Service
// port (an IANA service name: up to 15 lower-case letters, digits and
// single '-', with a letter, not starting or ending with '-').
func validPort(s string) bool {
	if n, err := strconv.Atoi(s); err == nil {
		return n >= 1 && n <= 65535
	}
	return len(s) <= 15 && portName.MatchString(s) && strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz")
}

// checkRepoPath checks that p names a path inside the repository.
func checkRepoPath(p string) error {
	c := path.Clean(filepath.ToSlash(p))
	if c == ".." || strings.HasPrefix(c, "../") || strings.ContainsAny(p, ":\n") {
		return fmt.Errorf("%q leaves the repository: want a path inside it, or an absolute path of this machine", p)
	}
	return nil
}

func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return h + p[1:]
		}
	}
	return p
}

func (k *Kubernetes) validate(kind string, bad func(field, format string, a ...any)) {
	const p = "runtime.kubernetes."
	if kind == "kubernetes" {
		switch {
		case k.Manifests == "":
			bad(p+"manifests", "required: a directory of YAML templates, in the repository (relative) or of this machine (absolute)")
		case !filepath.IsAbs(k.Manifests):
			if err := checkRepoPath(k.Manifests); err != nil {
				bad(p+"manifests", "%v", err)
			}
		default:
			if st, err := os.Stat(k.Manifests); err != nil || !st.IsDir() {
				bad(p+"manifests", "%q is not a directory", k.Manifests)
			}
		}
	}
	if kind == "argocd" && k.ArgoCD.Token == "" {
		bad(p+"argocd.token", "required for runtime.kind argocd: the bearer token Argo CD sends (use ${VAR})")
	}
	for field, v := range map[string]string{"namespace": k.Namespace, "image": k.Image, "url": k.URL} {
		if v == "" {
			continue
		}
		if err := tmpl.Check(field, v, tmpl.Sample()); err != nil {
			bad(p+field, "%v", err)
		}
	}
	if k.WaitForImage && k.Image == "" {
		bad(p+"waitForImage", "needs runtime.kubernetes.image")
	}
	for i, s := range k.PullSecrets {
		if ns, name, ok := strings.Cut(s, "/"); !ok || ns == "" || name == "" {
			bad(p+"pullSecrets["+strconv.Itoa(i)+"]", "%q is not namespace/name", s)
		}
	}
	switch {
	case k.Migrate.Job == "":
	case !filepath.IsAbs(k.Migrate.Job):
		if err := checkRepoPath(k.Migrate.Job); err != nil {
			bad(p+"migrate.job", "%v", err)
		}
	default:
		if raw, err := os.ReadFile(k.Migrate.Job); err != nil {
			bad(p+"migrate.job", "%q is not a readable file", k.Migrate.Job)
		} else if err := tmpl.Check("migrate job", string(raw), tmpl.Sample()); err != nil {
			bad(p+"migrate.job", "%v", err)
		}
	}
	for field, d := range map[string]Duration{
		"rolloutTimeout": k.RolloutTimeout, "deleteTimeout": k.DeleteTimeout, "imagePollInterval": k.ImagePollInterval,
		"migrate.timeout": k.Migrate.Timeout,
	} {
		if d.Duration <= 0 {
			bad(p+field, "must be positive")
		}
	}
	le := k.LeaderElection
	if le.Enabled && !(le.RetryPeriod.Duration < le.RenewDeadline.Duration && le.RenewDeadline.Duration < le.LeaseDuration.Duration) {
		bad(p+"leaderElection", "want retryPeriod < renewDeadline < leaseDuration")
	}
	if px := k.Proxy; px.Service != "" || px.Port != "" {
		switch {
		case kind != "kubernetes":
			bad(p+"proxy", "only for runtime.kind kubernetes (under argocd, Argo CD owns the app)")
		case px.Service == "":
			bad(p+"proxy.service", "required with proxy.port: the name of the environment's Service")
		case len(px.Service) > 63 || !serviceName.MatchString(px.Service):
			bad(p+"proxy.service", "%q is not a Service name (lower-case letters, digits and '-', starting with a letter)", px.Service)
		}
		if px.Port != "" && !validPort(px.Port) {
			bad(p+"proxy.port", "%q is neither a port's name nor a number from 1 to 65535", px.Port)
		}
	}
	if k.QPS < 0 || k.Burst < 0 {
		bad(p+"qps", "qps and burst must not be negative")
	}
}
