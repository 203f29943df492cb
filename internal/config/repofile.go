package config

import (
	"bytes"
	"fmt"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/previewd/previewd/internal/env"
)

// RepoFile is the app's own file, .previewd.yaml at the root of its
// repository, read at each environment's commit (a fork's change reads
// production's instead). It has the shape of the config file, but only
// its app-shaped keys: what it sets replaces the config's for that
// commit. Forge, auth, store, database and secret settings stay in
// previewd's config; setting one is an error naming it. Nothing in it is
// expanded (${VAR} stays as written; $PORT is the shell's).
//
//	migrate: npm run migrate
//	paths: [apps/web/**, packages/ui/**]
//	runtime:
//	  local:
//	    build: npm run build
//	    run: npm start -- -p $PORT
//	    healthPath: /
//	  kubernetes:
//	    manifests: deploy/preview
type RepoFile struct {
	// Migrate replaces migrate.
	Migrate *string `yaml:"migrate"`
	// Paths replaces paths.
	Paths *[]string `yaml:"paths"`
	// Runtime holds the runtime's app-shaped keys.
	Runtime RepoRuntime `yaml:"runtime"`
}

// RepoRuntime is the runtime part of the repository's file.
type RepoRuntime struct {
	Local      RepoLocal      `yaml:"local"`
	Kubernetes RepoKubernetes `yaml:"kubernetes"`
}

// RepoLocal holds the keys of runtime.local a repository may set.
type RepoLocal struct {
	// Build replaces runtime.local.build ("" builds nothing).
	Build *string `yaml:"build"`
	// Run replaces runtime.local.run.
	Run *string `yaml:"run"`
	// HealthPath replaces runtime.local.healthPath.
	HealthPath *string `yaml:"healthPath"`
	// StartTimeout replaces runtime.local.startTimeout.
	StartTimeout *Duration `yaml:"startTimeout"`
	// Processes replaces runtime.local.processes.
	Processes map[string]RepoProcess `yaml:"processes"`
	// Caches replaces runtime.local.caches.
	Caches *[]RepoCache `yaml:"caches"`
	// Outputs replaces runtime.local.outputs.
	Outputs *[]string `yaml:"outputs"`
}

// RepoProcess is one process of runtime.local.processes.
type RepoProcess struct {
	// Run is the process's shell command. Required.
	Run string `yaml:"run"`
	// HealthPath is polled until it answers 2xx (http processes).
	HealthPath string `yaml:"healthPath"`
	// HTTP marks the process that is routed; at most one.
	HTTP bool `yaml:"http"`
}

// RepoCache is one entry of runtime.local.caches.
type RepoCache struct {
	// Path is the cached directory, inside the checkout.
	Path string `yaml:"path"`
	// Key are the files whose content keys the cache.
	Key []string `yaml:"key"`
	// Run builds the directory.
	Run string `yaml:"run"`
}

// RepoKubernetes holds the keys of runtime.kubernetes a repository may set.
type RepoKubernetes struct {
	// Manifests replaces runtime.kubernetes.manifests: a directory inside
	// the repository.
	Manifests *string `yaml:"manifests"`
}

// notAllowed says, for the top-level sections of the config and a few
// keys within them, why the repository's file may not set them.
var notAllowed = map[string]string{
	"runtime.local.env":        "secrets stay in previewd's config",
	"runtime.local.inheritEnv": "what reaches an app from previewd's environment stays in previewd's config",
	"forge":                    "the forge and its credentials stay in previewd's config",
	"auth":                     "who may use previewd stays in previewd's config",
	"database":                 "the database and its admin stay in previewd's config",
	"store":                    "previewd's own store stays in previewd's config",
	"previews":                 "who may open previews stays in previewd's config",
	"lifecycle":                "the lifecycle policy stays in previewd's config",
}

// ParseRepoFile decodes the repository's file (name is used in messages).
// Unknown keys, keys only previewd's config may set and bad values are
// errors naming the field: a FieldError, or Errors.
func ParseRepoFile(name string, data []byte) (*RepoFile, error) {
	rf := &RepoFile{}
	if len(bytes.TrimSpace(data)) == 0 {
		return rf, nil
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(root.Content) == 0 {
		return rf, nil
	}
	if err := checkKeys(name, root.Content[0], reflect.TypeOf(*rf), ""); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(rf); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := rf.Validate(name); err != nil {
		return nil, err
	}
	return rf, nil
}

// checkKeys walks n against t (the RepoFile's types) and names the first
// key t has no field for: one of previewd's config, or an unknown one.
func checkKeys(file string, n *yaml.Node, t reflect.Type, at string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode || t == reflect.TypeOf(Duration{}) {
			return nil // the decoder says what is wrong with the value
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			field := join(at, k)
			f, ok := yamlField(t, k)
			if !ok {
				return keyError(file, field, n.Content[i].Line)
			}
			if err := checkKeys(file, n.Content[i+1], f.Type, field); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(file, n.Content[i+1], t.Elem(), join(at, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, c := range n.Content {
			if err := checkKeys(file, c, t.Elem(), at+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(at, k string) string {
	if at == "" {
		return k
	}
	return at + "." + k
}

// yamlField returns the field of struct type t whose yaml name is k.
func yamlField(t reflect.Type, k string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == k && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// KeyError names a key the repository's file may not hold: one only
// previewd's config may set (Why says why), or an unknown one.
type KeyError struct {
	File, Field string
	Line        int
	// Why is empty for an unknown key.
	Why string
}

func (e *KeyError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("%s is not allowed in %s: %s (line %d)", e.Field, e.File, e.Why, e.Line)
	}
	return fmt.Sprintf("%s: unknown key in %s (line %d); it may set %s", e.Field, e.File, e.Line, orList(repoKeys()))
}

// keyError says why field may not be in the repository's file: it is
// previewd's config's alone (with the reason of its section), or unknown.
func keyError(file, field string, line int) error {
	if !configHas(field) {
		return &KeyError{File: file, Field: field, Line: line}
	}
	why := "only previewd's config may set it"
	for p := field; p != ""; p = parentOf(p) {
		if w, ok := notAllowed[p]; ok {
			why = w
			break
		}
	}
	return &KeyError{File: file, Field: field, Line: line, Why: why}
}

func parentOf(p string) string {
	i := strings.LastIndexByte(p, '.')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// configHas reports whether field (dotted, with map keys and [i] for
// lists) is a key of previewd's config file.
func configHas(field string) bool {
	t := reflect.TypeOf(Config{})
	for _, part := range strings.Split(field, ".") {
		part, _, _ = strings.Cut(part, "[")
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
			continue
		case reflect.Struct:
			f, ok := yamlField(t, part)
			if !ok {
				return false
			}
			t = f.Type
		default:
			return false
		}
	}
	return true
}

// repoKeys are the keys the repository's file may set, for messages.
func repoKeys() []string {
	var keys []string
	var walk func(t reflect.Type, at string)
	walk = func(t reflect.Type, at string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
				walk(f.Type, join(at, name))
				continue
			}
			keys = append(keys, join(at, name))
		}
	}
	walk(reflect.TypeOf(RepoFile{}), "")
	sort.Strings(keys)
	return keys
}

// Validate checks the values of the repository's file and returns
// Errors naming each bad field.
func (rf *RepoFile) Validate(file string) error {
	var es Errors
	bad := func(field, format string, a ...any) {
		es = append(es, FieldError{field, fmt.Sprintf(format, a...) + " (in " + file + ")"})
	}
	l := rf.Runtime.Local
	if l.Run != nil && strings.TrimSpace(*l.Run) == "" {
		bad("runtime.local.run", "empty: the command that starts the app")
	}
	if l.HealthPath != nil && !strings.HasPrefix(*l.HealthPath, "/") {
		bad("runtime.local.healthPath", "%q must start with /", *l.HealthPath)
	}
	if l.StartTimeout != nil && l.StartTimeout.Duration <= 0 {
		bad("runtime.local.startTimeout", "must be positive")
	}
	checkPaths(bad, "paths", rf.Paths)
	http := 0
	for name, p := range l.Processes {
		field := "runtime.local.processes." + name
		if !validEnvName(name) {
			bad(field, "not a valid process name; want [A-Za-z_][A-Za-z0-9_]*")
		}
		if strings.TrimSpace(p.Run) == "" {
			bad(field+".run", "required: the process's command")
		}
		if p.HealthPath != "" && !strings.HasPrefix(p.HealthPath, "/") {
			bad(field+".healthPath", "%q must start with /", p.HealthPath)
		}
		if p.HTTP {
			http++
		}
	}
	if http > 1 {
		bad("runtime.local.processes", "%d processes have http: true; at most one is routed", http)
	}
	if l.Caches != nil {
		for i, c := range *l.Caches {
			field := "runtime.local.caches[" + strconv.Itoa(i) + "]"
			if err := checkInRepo(c.Path); err != nil {
				bad(field+".path", "%v", err)
			}
			if len(c.Key) == 0 {
				bad(field+".key", "required: the files whose content keys the cache")
			}
			for j, k := range c.Key {
				if err := checkInRepo(k); err != nil {
					bad(field+".key["+strconv.Itoa(j)+"]", "%v", err)
				}
			}
			if strings.TrimSpace(c.Run) == "" {
				bad(field+".run", "required: the command that fills the cache")
			}
		}
	}
	if l.Outputs != nil {
		for i, o := range *l.Outputs {
			if err := checkInRepo(o); err != nil {
				bad("runtime.local.outputs["+strconv.Itoa(i)+"]", "%v", err)
			}
		}
	}
	if m := rf.Runtime.Kubernetes.Manifests; m != nil {
		if err := checkInRepo(*m); err != nil {
			bad("runtime.kubernetes.manifests", "%v", err)
		}
	}
	if len(es) == 0 {
		return nil
	}
	return es
}

func checkPaths(bad func(string, string, ...any), field string, paths *[]string) {
	if paths == nil {
		return
	}
	for i, g := range *paths {
		if err := env.CheckPathGlob(g); err != nil {
			bad(field+"["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
}

// checkInRepo accepts a relative path that stays inside the repository.
func checkInRepo(p string) error {
	c := path.Clean(strings.TrimSuffix(p, "/"))
	switch {
	case strings.TrimSpace(p) == "":
		return fmt.Errorf("empty")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must be a path inside the repository, not an absolute one", p)
	case c == ".." || strings.HasPrefix(c, "../") || strings.ContainsAny(p, ":\n"):
		return fmt.Errorf("%q leaves the repository", p)
	}
	return nil
}

// AppSpec returns the config's app-shaped settings: what each commit gets
// when its repository has no .previewd.yaml.
func (c *Config) AppSpec() env.AppSpec {
	l := c.Runtime.Local
	s := env.AppSpec{
		Build:        l.Build,
		Run:          l.Run,
		Migrate:      c.Migrate,
		HealthPath:   l.HealthPath,
		StartTimeout: l.StartTimeout.Duration,
		Paths:        c.Paths,
		Manifests:    c.Runtime.Kubernetes.Manifests,
	}
	return s
}

// Apply returns base with what the file sets over it; from says where the
// file was read (e.g. ".previewd.yaml at abc1234").
func (rf *RepoFile) Apply(base env.AppSpec, from string) env.AppSpec {
	s := base
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	l := rf.Runtime.Local
	set(&s.Build, l.Build)
	set(&s.Run, l.Run)
	set(&s.HealthPath, l.HealthPath)
	set(&s.Migrate, rf.Migrate)
	s.MigrateSet = s.MigrateSet || rf.Migrate != nil
	set(&s.Manifests, rf.Runtime.Kubernetes.Manifests)
	if l.StartTimeout != nil {
		s.StartTimeout = l.StartTimeout.Duration
	}
	if rf.Paths != nil {
		s.Paths = *rf.Paths
	}
	if l.Processes != nil {
		s.Processes = make(map[string]env.AppProcess, len(l.Processes))
		for name, p := range l.Processes {
			s.Processes[name] = env.AppProcess{Run: p.Run, HealthPath: p.HealthPath, HTTP: p.HTTP}
		}
	}
	if l.Caches != nil {
		s.Caches = make([]env.AppCache, len(*l.Caches))
		for i, c := range *l.Caches {
			s.Caches[i] = env.AppCache{Path: c.Path, Key: c.Key, Run: c.Run}
		}
	}
	if l.Outputs != nil {
		s.Outputs = *l.Outputs
	}
	s.From = from
	return s
}
