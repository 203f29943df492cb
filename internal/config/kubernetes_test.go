package config

import (
	"strings"
	"testing"
	"time"
)

func TestKubernetesDefaultsAndValidation(t *testing.T) {
	dir := t.TempDir()
	env := func(k string) (string, bool) { return "tok", true }
	c, err := Parse([]byte("forge: {git: {url: x}}\nruntime: {kind: kubernetes, kubernetes: {manifests: .}}"), dir, env)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Runtime.Kubernetes
	if k.Namespace != "preview-{{.Key}}" || k.ProductionNamespace != "production" || k.RolloutTimeout.Duration != 5*time.Minute || k.Manifests != "." {
		t.Errorf("defaults = %+v", k)
	}
	c, err = Parse([]byte("forge: {git: {url: x}}\nruntime: {kind: kubernetes, kubernetes: {manifests: ., proxy: {service: web, port: 8080}}}"), dir, env)
	if err != nil {
		t.Fatal(err)
	}
	if px := c.Runtime.Kubernetes.Proxy; px.Service != "web" || px.Port != "8080" {
		t.Errorf("proxy = %+v", px)
	}
	for _, port := range []string{"http", "web-2", "1", "65535"} {
		if !validPort(port) {
			t.Errorf("port %q refused", port)
		}
	}
	for _, port := range []string{"0", "-1", "a--b", "http-", "averyveryverylongname", "123-456", "HTTP"} {
		if validPort(port) {
			t.Errorf("port %q accepted", port)
		}
	}
	tests := map[string]struct {
		yaml string
		want []string
	}{
		"no manifests":                      {"runtime: {kind: kubernetes}", []string{"runtime.kubernetes.manifests: required"}},
		"bad template":                      {"runtime: {kind: kubernetes, kubernetes: {manifests: ., namespace: 'p-{{.Nope}}'}}", []string{"runtime.kubernetes.namespace:"}},
		"argocd token":                      {"runtime: {kind: argocd}", []string{"runtime.kubernetes.argocd.token: required"}},
		"wait without image":                {"runtime: {kind: argocd, kubernetes: {waitForImage: true, argocd: {token: x}}}", []string{"runtime.kubernetes.waitForImage:"}},
		"pull secret":                       {"runtime: {kind: argocd, kubernetes: {pullSecrets: [nons], argocd: {token: x}}}", []string{"runtime.kubernetes.pullSecrets[0]:"}},
		"lease timing":                      {"runtime: {kind: argocd, kubernetes: {argocd: {token: x}, leaderElection: {enabled: true, leaseDuration: 1s}}}", []string{"runtime.kubernetes.leaderElection:"}},
		"unknown key":                       {"runtime: {kind: kubernetes, kubernetes: {manifest: .}}", []string{"manifest"}},
		"manifests leave the repository":    {"runtime: {kind: kubernetes, kubernetes: {manifests: ../deploy}}", []string{"runtime.kubernetes.manifests:", "leaves the repository"}},
		"absolute manifests not there":      {"runtime: {kind: kubernetes, kubernetes: {manifests: /nonexistent/manifests}}", []string{"runtime.kubernetes.manifests:", "is not a directory"}},
		"migrate job leaves the repository": {"runtime: {kind: kubernetes, kubernetes: {manifests: deploy, migrate: {job: ../job.yaml}}}", []string{"runtime.kubernetes.migrate.job:"}},
		"proxy without service":             {"runtime: {kind: kubernetes, kubernetes: {manifests: ., proxy: {port: http}}}", []string{"runtime.kubernetes.proxy.service: required"}},
		"proxy bad service":                 {"runtime: {kind: kubernetes, kubernetes: {manifests: ., proxy: {service: Web_1}}}", []string{"runtime.kubernetes.proxy.service:", "Web_1"}},
		"proxy bad port name":               {"runtime: {kind: kubernetes, kubernetes: {manifests: ., proxy: {service: web, port: -http}}}", []string{"runtime.kubernetes.proxy.port:", "-http"}},
		"proxy port out of range":           {"runtime: {kind: kubernetes, kubernetes: {manifests: ., proxy: {service: web, port: 70000}}}", []string{"runtime.kubernetes.proxy.port:", "70000"}},
		"proxy under argocd":                {"runtime: {kind: argocd, kubernetes: {argocd: {token: x}, proxy: {service: web}}}", []string{"runtime.kubernetes.proxy: only for runtime.kind kubernetes"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("forge: {git: {url: x}}\n"+tt.yaml), dir, env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
