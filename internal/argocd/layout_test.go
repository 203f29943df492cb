package argocd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"sigs.k8s.io/yaml"

	"github.com/previewd/previewd/internal/env"
)

const (
	layoutDir = "../../deploy/argocd"
	repoRoot  = "../.."
)

// obj is a Kubernetes object as generic JSON.
type obj = map[string]any

func readDocs(t *testing.T, file string) []obj {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []obj
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		var m obj
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

func at(o any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := o.(obj)
			o = m[k]
		case int:
			l, _ := o.([]any)
			if k >= len(l) {
				return nil
			}
			o = l[k]
		}
	}
	return o
}

func str(o any, path ...any) string {
	s, _ := at(o, path...).(string)
	return s
}

// synced returns the objects root.yaml syncs: the files of its path, as
// Argo CD's directory source picks them (*.yaml, *.yml, *.json, not
// recursing, minus exclude).
func synced(t *testing.T, root obj) map[string]obj {
	t.Helper()
	dir := filepath.Join(repoRoot, str(root, "spec", "source", "path"))
	exclude := str(root, "spec", "source", "directory", "exclude")
	if at(root, "spec", "source", "directory", "recurse") == true {
		t.Fatal("root.yaml recurses; this test reads one directory")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	objs := map[string]obj{}
	for _, f := range files {
		name := filepath.Base(f)
		if ext := filepath.Ext(name); ext != ".yaml" && ext != ".yml" && ext != ".json" {
			continue
		}
		if excluded(t, exclude, name) {
			continue
		}
		for _, o := range readDocs(t, f) {
			objs[str(o, "kind")+"/"+str(o, "metadata", "name")] = o
		}
	}
	return objs
}

// excluded applies a directory source's exclude: a glob, or {a,b,...}.
func excluded(t *testing.T, pattern, name string) bool {
	if pattern == "" {
		return false
	}
	alts := []string{pattern}
	if strings.HasPrefix(pattern, "{") && strings.HasSuffix(pattern, "}") {
		alts = strings.Split(pattern[1:len(pattern)-1], ",")
	}
	for _, a := range alts {
		if ok, err := filepath.Match(a, name); err != nil {
			t.Fatalf("exclude %q: %v", pattern, err)
		} else if ok {
			return true
		}
	}
	return false
}

// TestReferenceLayout checks that deploy/argocd works as shipped. It takes
// the parameters previewd's generator answers (through Argo CD's client
// shapes), renders each Application the way Argo CD's ApplicationSet
// controller does, runs the repo-server's kustomize step over the example
// base as kustomize applies it, and checks what would run: the image at
// the environment's SHA, its host, namespace and Secret.
func TestReferenceLayout(t *testing.T) {
	root := readDocs(t, filepath.Join(layoutDir, "root.yaml"))[0]
	objs := synced(t, root)
	var appset obj
	for k, o := range objs {
		if strings.HasPrefix(k, "ApplicationSet/") {
			appset = o
		}
		if strings.HasPrefix(k, "Secret/") {
			t.Errorf("root.yaml syncs %s: self-heal would put the committed value back over the real token", k)
		}
	}
	prod := objs["Application/markdown-editor-production"]
	if appset == nil || objs["Application/markdown-editor-root"] == nil || prod == nil {
		t.Fatalf("want an app-of-apps, the production Application and an ApplicationSet; have %v", keysOf(objs))
	}

	// The generator: a ConfigMap with baseUrl and a $secret:key token the
	// README tells how to create, polled.
	gens, _ := at(appset, "spec", "generators").([]any)
	if len(gens) != 1 || at(gens[0], "plugin") == nil {
		t.Fatalf("generators = %v", gens)
	}
	plugin := at(gens[0], "plugin")
	cm := objs["ConfigMap/"+str(plugin, "configMapRef", "name")]
	if cm == nil || str(cm, "data", "baseUrl") == "" {
		t.Fatalf("the plugin generator's ConfigMap %q is not in the layout", str(plugin, "configMapRef", "name"))
	}
	secret, key, ok := strings.Cut(strings.TrimPrefix(str(cm, "data", "token"), "$"), ":")
	readme, err := os.ReadFile(filepath.Join(layoutDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !ok || !strings.Contains(string(readme), "create secret generic "+secret+" --from-file="+key+"=") {
		t.Errorf("the token %q names a Secret and key the README does not tell how to create", str(cm, "data", "token"))
	}
	if n, _ := at(plugin, "requeueAfterSeconds").(float64); n <= 0 {
		t.Errorf("requeueAfterSeconds = %v", at(plugin, "requeueAfterSeconds"))
	}

	// previewd's side, from the README: namespace, production namespace,
	// image.
	cfg := readmeConfig(t, string(readme))
	describe := func(e env.Environment) (Params, error) {
		data := map[string]any{"Key": e.Key, "SHA": e.SHA, "ShortSHA": env.ShortSHA(e.SHA), "Number": e.Number, "Branch": e.Branch}
		ns := cfg["productionNamespace"]
		if !e.Production() {
			ns = execText(t, cfg["namespace"], data)
		}
		return Params{Namespace: ns, Host: e.Key + ".preview.example.com", Image: execText(t, cfg["image"], data), Secret: "previewd-env"}, nil
	}
	f := newFixture(t, "t0ken")
	f.srv.Config.Handler = New(Options{Token: "t0ken", Store: f.st, Describe: describe})
	f.set(env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "feature/Login", SHA: shaA}, env.StatusReady, true)
	f.set(env.Source{Key: "branch-staging", Kind: env.KindBranch, Branch: "staging", SHA: shaB}, env.StatusReady, true)
	// pr-9 is live at C while D builds.
	f.set(env.Source{Key: "pr-9", Kind: env.KindPullRequest, Number: 9, Branch: "x", SHA: shaC}, env.StatusReady, true)
	f.set(env.Source{Key: "pr-9", Kind: env.KindPullRequest, Number: 9, Branch: "x", SHA: strings.Repeat("d", 40)}, env.StatusBuilding, false)
	f.set(env.Source{Key: "production", Kind: env.KindProduction, Branch: "main", SHA: shaC}, env.StatusReady, true)

	input, _ := at(plugin, "input", "parameters").(obj)
	params, err := f.client("t0ken").list(input)
	if err != nil {
		t.Fatal(err)
	}
	if len(params) != 3 {
		t.Fatalf("the ApplicationSet's input lists %d environments, want pr-7, branch-staging and pr-9", len(params))
	}
	if str(appset, "spec", "goTemplate") != "" || at(appset, "spec", "goTemplate") != true {
		t.Fatal("the ApplicationSet does not use goTemplate; this test renders Go templates")
	}
	var opts []string
	for _, o := range at(appset, "spec", "goTemplateOptions").([]any) {
		opts = append(opts, o.(string))
	}
	tmpl := at(appset, "spec", "template").(obj)
	names := map[string]bool{}
	for _, p := range params {
		app, err := renderTemplate(tmpl, p, opts)
		if err != nil {
			t.Fatalf("%s: %v", p["key"], err)
		}
		name := str(app, "metadata", "name")
		if names[name] {
			t.Errorf("two environments render the Application %s", name)
		}
		names[name] = true
		if got := str(app, "spec", "source", "targetRevision"); got != p["sha"] {
			t.Errorf("%s: targetRevision %q, want the SHA %v", name, got, p["sha"])
		}
		if got := str(app, "spec", "destination", "namespace"); got != p["namespace"] {
			t.Errorf("%s: destination namespace %q, want %v", name, got, p["namespace"])
		}
		checkBuild(t, name, app, want{image: p["image"].(string), host: p["host"].(string), namespace: p["namespace"].(string), secret: p["secret"].(string)})
		if !strings.HasSuffix(p["image"].(string), ":"+p["sha"].(string)) {
			t.Errorf("%s: image %v is not at its SHA %v", name, p["image"], p["sha"])
		}
	}
	if !names["markdown-editor-pr-9"] {
		t.Errorf("pr-9, live while a new commit builds, has no Application: %v", names)
	}

	// Production: pinned to one commit, and the image kustomize produces
	// is that commit's.
	rev := str(prod, "spec", "source", "targetRevision")
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(rev) {
		t.Errorf("production's targetRevision %q is not a commit SHA", rev)
	}
	prodNS := cfg["productionNamespace"]
	if got := str(prod, "spec", "destination", "namespace"); got != prodNS {
		t.Errorf("production deploys into %q, but previewd provisions production's Secret in %q", got, prodNS)
	}
	checkBuild(t, "production", prod, want{image: "ghcr.io/acme/markdown-editor:" + rev, host: "markdown-editor.example.com", namespace: prodNS, secret: "previewd-env"})
}

// readmeConfig returns runtime.kubernetes from the README's config block.
func readmeConfig(t *testing.T, readme string) map[string]string {
	t.Helper()
	i := strings.Index(readme, "    runtime:\n")
	if i < 0 {
		t.Fatal("no previewd config block in the README")
	}
	var block []string
	for _, l := range strings.Split(readme[i:], "\n") {
		if l != "" && !strings.HasPrefix(l, "    ") {
			break
		}
		block = append(block, strings.TrimPrefix(l, "    "))
	}
	var c struct {
		Runtime struct {
			Kind       string         `json:"kind"`
			Kubernetes map[string]any `json:"kubernetes"`
		} `json:"runtime"`
	}
	if err := yaml.Unmarshal([]byte(strings.Join(block, "\n")), &c); err != nil {
		t.Fatal(err)
	}
	if c.Runtime.Kind != "argocd" {
		t.Errorf("the README's config has runtime.kind %q", c.Runtime.Kind)
	}
	out := map[string]string{"namespace": "preview-{{.Key}}", "productionNamespace": "production"}
	for k, v := range c.Runtime.Kubernetes {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func execText(t *testing.T, text string, data any) string {
	t.Helper()
	var b strings.Builder
	if err := template.Must(template.New("").Option("missingkey=error").Parse(text)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// renderTemplate renders an ApplicationSet's template for one parameter
// set as Argo CD's goTemplate renderer does: every string in it, keys
// excepted, is its own Go template, parsed with the goTemplateOptions
// applied and executed over the parameters. (Argo CD adds the sprig
// functions; the layout uses none, so a template using one fails here.)
func renderTemplate(tmpl obj, params map[string]any, opts []string) (obj, error) {
	var walk func(v any) (any, error)
	walk = func(v any) (any, error) {
		switch x := v.(type) {
		case obj:
			out := obj{}
			for k, e := range x {
				r, err := walk(e)
				if err != nil {
					return nil, err
				}
				out[k] = r
			}
			return out, nil
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				r, err := walk(e)
				if err != nil {
					return nil, err
				}
				out[i] = r
			}
			return out, nil
		case string:
			t, err := template.New("").Parse(x)
			if err != nil {
				return nil, fmt.Errorf("failed to parse template %s: %w", x, err)
			}
			for _, o := range opts {
				t = t.Option(o)
			}
			var b bytes.Buffer
			if err := t.Execute(&b, params); err != nil {
				return nil, fmt.Errorf("failed to execute go template %s: %w", x, err)
			}
			return b.String(), nil
		}
		return v, nil
	}
	r, err := walk(tmpl)
	if err != nil {
		return nil, err
	}
	return r.(obj), nil
}

type want struct{ image, host, namespace, secret string }

// checkBuild runs the repo-server's kustomize step for an Application's
// source (kustomize edit set namespace / set image, the patches, build)
// over the base in this repository, and checks the result.
func checkBuild(t *testing.T, name string, app obj, w want) {
	t.Helper()
	src := at(app, "spec", "source")
	dir := filepath.Join(repoRoot, str(src, "path"))
	var kust struct {
		Resources []string    `json:"resources"`
		Images    []kustImage `json:"images"`
		Namespace string      `json:"namespace"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		t.Fatal(err)
	}
	k := at(src, "kustomize")
	if ns := str(k, "namespace"); ns != "" {
		kust.Namespace = ns
	}
	var args []string
	for _, a := range at(k, "images").([]any) {
		args = append(args, a.(string))
	}
	if kust.Images, err = setImages(kust.Images, args); err != nil {
		t.Fatalf("%s: kustomize edit set image: %v", name, err)
	}
	var docs []obj
	for _, r := range kust.Resources {
		docs = append(docs, readDocs(t, filepath.Join(dir, r))...)
	}
	patches, _ := at(k, "patches").([]any)
	for _, p := range patches {
		var ops []struct {
			Op    string `json:"op"`
			Path  string `json:"path"`
			Value any    `json:"value"`
		}
		if err := yaml.Unmarshal([]byte(str(p, "patch")), &ops); err != nil {
			t.Fatalf("%s: patch: %v", name, err)
		}
		matched := false
		for _, d := range docs {
			if str(d, "kind") != str(p, "target", "kind") || str(d, "metadata", "name") != str(p, "target", "name") {
				continue
			}
			matched = true
			for _, op := range ops {
				if op.Op != "replace" {
					t.Fatalf("%s: patch op %q: this test knows replace", name, op.Op)
				}
				if err := replace(d, op.Path, op.Value); err != nil {
					t.Errorf("%s: patch %s on %s: %v", name, op.Path, str(d, "kind"), err)
				}
			}
		}
		if !matched {
			t.Errorf("%s: patch target %v matches nothing in the base", name, at(p, "target"))
		}
	}
	for _, d := range docs {
		if kust.Namespace != "" {
			d["metadata"].(obj)["namespace"] = kust.Namespace
		}
		for _, c := range containers(d) {
			c["image"] = transformImage(c["image"].(string), kust.Images)
		}
	}
	for _, d := range docs {
		got := str(d, "metadata", "namespace")
		if got == "" { // Argo CD applies it in the destination namespace
			got = str(app, "spec", "destination", "namespace")
		}
		if got != w.namespace {
			t.Errorf("%s: %s in namespace %q, want %q", name, str(d, "kind"), got, w.namespace)
		}
		switch str(d, "kind") {
		case "Deployment":
			for _, c := range containers(d) {
				if c["image"] != w.image {
					t.Errorf("%s: container %v runs %v, want %s", name, c["name"], c["image"], w.image)
				}
			}
			if got := str(d, "spec", "template", "spec", "containers", 0, "envFrom", 0, "secretRef", "name"); got != w.secret {
				t.Errorf("%s: the app reads the Secret %q, want %q", name, got, w.secret)
			}
		case "Ingress":
			if got := str(d, "spec", "rules", 0, "host"); got != w.host {
				t.Errorf("%s: Ingress host %q, want %q", name, got, w.host)
			}
		}
	}
}

// containers returns the containers and init containers of a workload,
// the image fields kustomize's image transformer updates.
func containers(d obj) []obj {
	spec := at(d, "spec", "template", "spec")
	switch str(d, "kind") {
	case "CronJob":
		spec = at(d, "spec", "jobTemplate", "spec", "template", "spec")
	case "Pod":
		spec = at(d, "spec")
	}
	var out []obj
	for _, f := range []string{"initContainers", "containers"} {
		l, _ := at(spec, f).([]any)
		for _, c := range l {
			out = append(out, c.(obj))
		}
	}
	return out
}

// replace is a JSON patch replace: the path must exist.
func replace(d obj, pointer string, value any) error {
	parts := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	var cur any = d
	for i, p := range parts {
		p = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
		last := i == len(parts)-1
		switch c := cur.(type) {
		case obj:
			if _, ok := c[p]; !ok {
				return fmt.Errorf("no %s", p)
			}
			if last {
				c[p] = value
				return nil
			}
			cur = c[p]
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n >= len(c) {
				return fmt.Errorf("no index %s", p)
			}
			if last {
				c[n] = value
				return nil
			}
			cur = c[n]
		default:
			return fmt.Errorf("%s is not a map or list", p)
		}
	}
	return nil
}

// kustImage is one entry of a kustomization's images.
type kustImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

var tagArg = regexp.MustCompile(`^(.*):([a-zA-Z0-9._-]*)$`)

// setImages is `kustomize edit set image args...`: each argument,
// <name>=<newName>[:tag|@digest] or <name>[:tag|@digest], replaces the
// entry of the same name or is added; the list is then sorted by name, the
// order kustomize's image transformers run in.
func setImages(images []kustImage, args []string) ([]kustImage, error) {
	byName := map[string]kustImage{}
	for _, a := range args {
		var im kustImage
		target, overwrite := a, false
		if l, r, ok := strings.Cut(a, "="); ok {
			im.Name, target, overwrite = l, r, true
		}
		var name string
		switch {
		case strings.Contains(target, "@"):
			name, im.Digest, _ = strings.Cut(target, "@")
		case tagArg.MatchString(target):
			m := tagArg.FindStringSubmatch(target)
			name, im.NewTag = m[1], m[2]
		case overwrite && target != "":
			name = target
		default:
			return nil, fmt.Errorf("invalid image %q", a)
		}
		if overwrite {
			im.NewName = name
		} else {
			im.Name = name
		}
		byName[im.Name] = im
	}
	for _, im := range images {
		if _, ok := byName[im.Name]; !ok {
			byName[im.Name] = im
		}
	}
	var out []kustImage
	for _, im := range byName {
		out = append(out, im)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// transformImage applies the image transformers in order: an entry
// matches when its name equals the image's name without tag and digest;
// it then replaces the name, the tag and the digest it sets.
func transformImage(image string, images []kustImage) string {
	for _, im := range images {
		name, tag, digest := splitImage(image)
		if name != im.Name {
			continue
		}
		if im.NewName != "" {
			name = im.NewName
		}
		if im.NewTag != "" {
			tag = ":" + im.NewTag
		}
		if im.Digest != "" {
			tag, digest = "", "@"+im.Digest
		}
		image = name + tag + digest
	}
	return image
}

// splitImage splits name[:tag][@digest]; a colon before the last slash is
// a registry port.
func splitImage(image string) (name, tag, digest string) {
	if i := strings.Index(image, "@"); i >= 0 {
		image, digest = image[:i], image[i:]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image, tag = image[:i], image[i:]
	}
	return image, tag, digest
}

// TestKustomizeImageRule pins the rule the layout test relies on, with the
// override this layout shipped before: naming the new image instead of the
// base's leaves every environment at :latest.
func TestKustomizeImageRule(t *testing.T) {
	base := []kustImage{{Name: "markdown-editor", NewName: "ghcr.io/acme/markdown-editor", NewTag: "latest"}}
	img := "ghcr.io/acme/markdown-editor:" + shaA
	for arg, want := range map[string]string{
		"ghcr.io/acme/markdown-editor=" + img:  "ghcr.io/acme/markdown-editor:latest",
		"ghcr.io/acme/markdown-editor:" + shaA: "ghcr.io/acme/markdown-editor:latest",
		"markdown-editor=" + img:               img,
		// Without "=", the entry replaces the base's whole entry, newName too.
		"markdown-editor:" + shaA:                                 "markdown-editor:" + shaA,
		"markdown-editor=registry.example.com:5000/me@sha256:abc": "registry.example.com:5000/me@sha256:abc",
	} {
		images, err := setImages(base, []string{arg})
		if err != nil {
			t.Fatal(err)
		}
		if got := transformImage("markdown-editor", images); got != want {
			t.Errorf("set image %s: %s, want %s", arg, got, want)
		}
	}
	if n, tg, d := splitImage("registry.example.com:5000/me:v1@sha256:abc"); n != "registry.example.com:5000/me" || tg != ":v1" || d != "@sha256:abc" {
		t.Errorf("split = %q %q %q", n, tg, d)
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
