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

// EnvURL returns an environment's URL: the url template if set, else
// http://<key>.<domain>:<listen port>.
func (c *Config) EnvURL(key string) string {
	d := tmpl.URLData{Key: key, Host: key + "." + c.Domain, Domain: c.Domain, Port: c.ListenPort()}
	if c.URL != "" {
		if t, err := tmpl.Parse("url", c.URL); err == nil {
			if u, err := tmpl.Execute(t, d); err == nil {
				return u
			}
		}
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
