package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCachesParsed(t *testing.T) {
	y := `forge: {git: {url: x}}
runtime:
  local:
    build: go build -o bin/app .
    outputs: [bin/, .next]
    cacheMaxAge: 3d
    cacheMaxBytes: 500MB
    caches:
      - {path: node_modules, key: [package-lock.json], run: "npm ci"}
      - {path: .gomodcache, key: [go.sum], run: "go mod download", share: copy}
`
	c, err := Parse([]byte(y), "/x", lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Runtime.Local
	if len(l.Caches) != 2 || l.Caches[0].Path != "node_modules" || l.Caches[0].Key[0] != "package-lock.json" || l.Caches[0].Run != "npm ci" {
		t.Errorf("caches = %+v", l.Caches)
	}
	if l.Caches[0].Share != ShareLink || l.Caches[1].Share != ShareCopy {
		t.Errorf("share = %q, %q; want link (the default), copy", l.Caches[0].Share, l.Caches[1].Share)
	}
	if strings.Join(l.Outputs, " ") != "bin/ .next" {
		t.Errorf("outputs = %v", l.Outputs)
	}
	if l.CacheMaxAge.Duration != 72*time.Hour || l.CacheMaxBytes != 500<<20 {
		t.Errorf("cacheMaxAge %v, cacheMaxBytes %d", l.CacheMaxAge, l.CacheMaxBytes)
	}
}

func TestCachesDefaults(t *testing.T) {
	c, err := Parse([]byte("forge: {git: {url: x}}"), "/x", lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Runtime.Local.CacheMaxAge.Duration != 7*24*time.Hour || c.Runtime.Local.CacheMaxBytes != 10<<30 {
		t.Errorf("defaults: cacheMaxAge %v, cacheMaxBytes %d; want 7d, 10GB", c.Runtime.Local.CacheMaxAge, c.Runtime.Local.CacheMaxBytes)
	}
}

func TestCachesInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want []string
	}{
		"no path, key or run": {"caches: [{share: tar}]", []string{"runtime.local.caches[0].path: required", "runtime.local.caches[0].key: required", "runtime.local.caches[0].run: required", `runtime.local.caches[0].share: unknown value "tar"`}},
		"path outside":        {"caches: [{path: ../x, key: [a], run: b}]", []string{"runtime.local.caches[0].path:"}},
		"absolute key":        {"caches: [{path: x, key: [/etc/passwd], run: b}]", []string{"runtime.local.caches[0].key[0]:"}},
		"bad glob":            {"caches: [{path: x, key: ['['], run: b}]", []string{"runtime.local.caches[0].key[0]:"}},
		"the same path twice": {"caches: [{path: x, key: [a], run: b}, {path: x/, key: [a], run: c}]", []string{"runtime.local.caches[1].path:"}},
		"output outside":      {"outputs: [/bin]", []string{"runtime.local.outputs[0]:"}},
		"output checkout":     {"outputs: [.]", []string{"runtime.local.outputs[0]:"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("forge: {git: {url: x}}\nruntime: {local: {"+strings.TrimPrefix(tc.yaml, "")+"}}"), "/x", lookup(nil))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors %q lack %q", err, w)
				}
			}
			if len(es) != len(tc.want) {
				t.Errorf("got %d errors, want %d: %v", len(es), len(tc.want), err)
			}
		})
	}
	for _, bad := range []string{"cacheMaxAge: 7days", "cacheMaxBytes: 10 parsecs"} {
		if _, err := Parse([]byte("forge: {git: {url: x}}\nruntime: {local: {"+bad+"}}"), "/x", lookup(nil)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"10GB": 10 << 30, "500MB": 500 << 20, "1kb": 1024, "123": 123, "2 TB": 2 << 40, "7B": 7} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GB", "-1MB", "1.5GB", "10 parsecs"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q): no error", in)
		}
	}
}
