package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestParseRepoFile reads every key the repository's file may set and
// applies it over the config's spec.
func TestParseRepoFile(t *testing.T) {
	y := `
migrate: ./app migrate
paths: [apps/web/**, packages/ui/**]
runtime:
  local:
    build: ""
    run: npm start -- -p $PORT
    healthPath: /
    startTimeout: 90s
    processes:
      web: {run: "npm start", healthPath: /, http: true}
      worker: {run: "node worker.js"}
    caches:
      - {path: node_modules, key: [package-lock.json], run: "npm ci"}
    outputs: [.next]
  kubernetes:
    manifests: deploy/preview
`
	rf, err := ParseRepoFile(".previewd.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	base := env.AppSpec{Build: "go build", Run: "./app", HealthPath: "/healthz", StartTimeout: time.Minute, Migrate: "old", Manifests: "deploy/x"}
	got := rf.Apply(base, ".previewd.yaml at abc1234")
	want := env.AppSpec{
		Build: "", Run: "npm start -- -p $PORT", HealthPath: "/", StartTimeout: 90 * time.Second, Migrate: "./app migrate", MigrateSet: true,
		Paths:     []string{"apps/web/**", "packages/ui/**"},
		Manifests: "deploy/preview",
		Processes: map[string]env.AppProcess{"web": {Run: "npm start", HealthPath: "/", HTTP: true}, "worker": {Run: "node worker.js"}},
		Caches:    []env.AppCache{{Path: "node_modules", Key: []string{"package-lock.json"}, Run: "npm ci"}},
		Outputs:   []string{".next"},
		From:      ".previewd.yaml at abc1234",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("applied:\n got %+v\nwant %+v", got, want)
	}
	// What the file leaves out stays the config's.
	rf, err = ParseRepoFile(".previewd.yaml", []byte("runtime: {local: {run: ./other}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := rf.Apply(base, ""); got.Build != "go build" || got.Run != "./other" || got.HealthPath != "/healthz" || got.Migrate != "old" || got.MigrateSet {
		t.Errorf("partial file: %+v", got)
	}
	for _, empty := range []string{"", "\n", "# nothing\n"} {
		rf, err := ParseRepoFile(".previewd.yaml", []byte(empty))
		if err != nil || !reflect.DeepEqual(rf.Apply(base, ""), base) {
			t.Errorf("empty file %q: %v", empty, err)
		}
	}
}

// TestRepoFileRefuses: unknown keys, keys only previewd's config may set
// and bad values fail with the field named.
func TestRepoFileRefuses(t *testing.T) {
	tests := map[string]struct {
		yaml  string
		field string
		want  string
	}{
		"secrets":          {"runtime: {local: {env: {TOKEN: x}}}\n", "runtime.local.env", "runtime.local.env is not allowed in .previewd.yaml: secrets stay in previewd's config"},
		"forge":            {"forge: {kind: github}\n", "forge", "the forge and its credentials stay"},
		"forge nested":     {"forge: {github: {token: x}}\n", "forge", "not allowed"},
		"database admin":   {"database: {postgres: {adminURL: x}}\n", "database", "the database and its admin stay"},
		"auth":             {"auth: {anonymous: admin}\n", "auth", "who may use previewd"},
		"listen":           {"listen: 0.0.0.0:80\n", "listen", "only previewd's config may set it"},
		"kube namespace":   {"runtime: {kubernetes: {namespace: x}}\n", "runtime.kubernetes.namespace", "not allowed"},
		"unknown top":      {"bulid: make\n", "bulid", "unknown key"},
		"unknown local":    {"runtime: {local: {biuld: make}}\n", "runtime.local.biuld", "unknown key"},
		"unknown process":  {"runtime: {local: {processes: {web: {command: x}}}}\n", "runtime.local.processes.web.command", "unknown key"},
		"unknown cache":    {"runtime: {local: {caches: [{path: a, key: [b], run: c, ttl: 1}]}}\n", "runtime.local.caches[0].ttl", "unknown key"},
		"bad health":       {"runtime: {local: {healthPath: healthz}}\n", "runtime.local.healthPath", "must start with /"},
		"empty run":        {"runtime: {local: {run: \" \"}}\n", "runtime.local.run", "empty"},
		"bad glob":         {"paths: [\"apps/[\"]\n", "paths[0]", "not a valid glob"},
		"absolute mani":    {"runtime: {kubernetes: {manifests: /etc}}\n", "runtime.kubernetes.manifests", "inside the repository"},
		"leaving mani":     {"runtime: {kubernetes: {manifests: ../x}}\n", "runtime.kubernetes.manifests", "leaves the repository"},
		"process no run":   {"runtime: {local: {processes: {web: {http: true}}}}\n", "runtime.local.processes.web.run", "required"},
		"two http":         {"runtime: {local: {processes: {a: {run: x, http: true}, b: {run: y, http: true}}}}\n", "runtime.local.processes", "at most one"},
		"cache no key":     {"runtime: {local: {caches: [{path: a, run: c}]}}\n", "runtime.local.caches[0].key", "required"},
		"bad duration":     {"runtime: {local: {startTimeout: soon}}\n", "", "not a duration"},
		"wrong type":       {"paths: apps/**\n", "", "cannot unmarshal"},
		"not yaml":         {"runtime: [\n", "", "yaml"},
		"inherit env":      {"runtime: {local: {inheritEnv: [AWS_SECRET]}}\n", "runtime.local.inheritEnv", "not allowed"},
		"max restarts":     {"runtime: {local: {maxRestarts: 1}}\n", "runtime.local.maxRestarts", "only previewd's config"},
		"lifecycle":        {"lifecycle: {ttl: 1h}\n", "lifecycle", "lifecycle policy"},
		"previews access":  {"previews: {access: public}\n", "previews", "who may open previews"},
		"store":            {"store: {kind: postgres}\n", "store", "previewd's own store"},
		"kube image":       {"runtime: {kubernetes: {image: evil}}\n", "runtime.kubernetes.image", "not allowed"},
		"process bad name": {"runtime: {local: {processes: {\"a b\": {run: x}}}}\n", "runtime.local.processes.a b", "not a valid process name"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseRepoFile(".previewd.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if tt.field == "" {
				return
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
			var ke *KeyError
			var es Errors
			switch {
			case errors.As(err, &ke):
				if ke.Field != tt.field {
					t.Errorf("KeyError.Field = %q, want %q", ke.Field, tt.field)
				}
			case errors.As(err, &es):
				if es[0].Field != tt.field {
					t.Errorf("Errors[0].Field = %q, want %q", es[0].Field, tt.field)
				}
			default:
				t.Errorf("error %T names no field", err)
			}
		})
	}
}

func TestConfigPaths(t *testing.T) {
	c, err := Parse([]byte("forge: {git: {url: ./repo}}\npaths: [apps/web/**]\n"), "/x", lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.AppSpec(); !reflect.DeepEqual(s.Paths, []string{"apps/web/**"}) || s.Run != "./app" || s.HealthPath != "/healthz" {
		t.Errorf("AppSpec = %+v", s)
	}
	_, err = Parse([]byte("forge: {git: {url: ./repo}}\npaths: [\"a/x**\"]\n"), "/x", lookup(nil))
	if err == nil || !strings.Contains(err.Error(), "paths[0]") {
		t.Errorf("bad glob: %v", err)
	}
}
