package config

import (
	"net"
	"path"
	"strconv"

	"github.com/previewd/previewd/internal/tmpl"
)

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, &net.AddrError{Err: "bad port", Addr: addr}
	}
	return h, n, nil
}

// ListenPort returns the port of Listen.
func (c *Config) ListenPort() int {
	_, p, _ := splitHostPort(c.Listen)
	return p
}

// EnvURL returns an environment's URL before the runtime knows better (an
// Ingress host, runtime.kubernetes.url). It is the one place the default
// is decided: the url template if set; else, on Kubernetes (kinds
// kubernetes and argocd), https://<key>.<domain>; else previewd's own
// proxy, http://<key>.<domain>:<listen port> (no port for 80).
func (c *Config) EnvURL(key string) string {
	d := tmpl.URLData{Key: key, Host: key + "." + c.Domain, Domain: c.Domain, Port: c.ListenPort()}
	if c.URL != "" {
		if t, err := tmpl.Parse("url", c.URL); err == nil {
			if u, err := tmpl.Execute(t, d); err == nil {
				return u
			}
		}
	}
	if c.Runtime.Kind == "kubernetes" || c.Runtime.Kind == "argocd" {
		return "https://" + d.Host
	}
	if d.Port == 80 {
		return "http://" + d.Host
	}
	return "http://" + d.Host + ":" + strconv.Itoa(d.Port)
}

func checkGlobs(bad func(string, string, ...any), field string, globs []string) {
	for i, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			bad(field+"["+strconv.Itoa(i)+"]", "%q is not a valid glob: %v", g, err)
		}
	}
}
