package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/tmpl"
)

// SecretName is the name of the Secret previewd makes in each
// environment's namespace, holding every variable of the release.
const SecretName = "previewd-env"

// RehearsalSecretName is the Secret a migration rehearsal's Job reads
// (env.Release.Rehearsal): the rehearsal's variables, pointing at
// previewd's copy of the database. It lives beside SecretName, only while
// the rehearsal runs.
const RehearsalSecretName = SecretName + "-rehearsal"

// The labels on everything previewd applies.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "previewd"
	LabelEnv       = "previewd.dev/env"
	// AnnotationSHA on the namespace is the SHA last rolled out.
	AnnotationSHA = "previewd.dev/sha"
	// LabelMigrate marks migration Jobs, with the SHA they migrate to.
	LabelMigrate = "previewd.dev/migrate"
	// AnnotationMigrateHash on a migration Job is a hash of its pod
	// template (command, image, template): a Job of the same name with
	// another hash is replaced, never taken as this migration's.
	AnnotationMigrateHash = "previewd.dev/migrate-hash"
	// LabelRehearse marks a migration rehearsal's Job, with the SHA it
	// rehearses; it never carries LabelMigrate, so it is never taken for
	// the environment's migration.
	LabelRehearse = "previewd.dev/rehearse"
)

// Data is what every template sees (see internal/tmpl).
type Data = tmpl.Data

// Manifests are the parsed templates of one manifests directory.
type Manifests struct {
	files []*template.Template
	// From a kustomization.yaml: images to set and labels to add.
	images []kustomizeImage
	labels map[string]string
}

type kustomization struct {
	Resources    []string          `json:"resources"`
	Images       []kustomizeImage  `json:"images"`
	CommonLabels map[string]string `json:"commonLabels"`
	Namespace    string            `json:"namespace"`
	APIVersion   string            `json:"apiVersion"`
	Kind         string            `json:"kind"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
	Digest  string `json:"digest"`
}

// LoadManifests parses every *.yaml and *.yml file of dir, a directory of
// this machine, as a template. When dir holds a kustomization.yaml, its
// resources (files) are the templates and its images and commonLabels
// apply to them; namespace is ignored, as previewd places every object;
// other kustomize features are not supported and are named in the error.
func LoadManifests(dir string) (*Manifests, error) {
	if dir == "" {
		return &Manifests{}, nil
	}
	files, err := diskFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("reading manifests: %w", err)
	}
	return parseManifests(files, "")
}

// diskFiles reads the regular files under dir (following symbolic links
// to files), keyed by their slash-separated path below dir.
func diskFiles(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		if !isRegular(p) {
			return nil // a dangling link or a device is no template
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = raw
		return nil
	})
	return files, err
}

// isRegular reports whether p is (or links to) a regular file.
func isRegular(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// parseManifests parses the manifests of files (keyed by slash-separated
// paths below the manifests directory), as LoadManifests describes. Each
// template is named prefix/path, so an error names the file.
func parseManifests(files map[string][]byte, prefix string) (*Manifests, error) {
	m := &Manifests{}
	display := func(name string) string { return path.Join(prefix, name) }
	var names []string
	kfile := ""
	for _, n := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		if _, ok := files[n]; ok {
			kfile = n
			break
		}
	}
	if kfile != "" {
		var k kustomization
		if err := yaml.UnmarshalStrict(files[kfile], &k); err != nil {
			return nil, fmt.Errorf("%s: %w (previewd supports resources, images and commonLabels)", display(kfile), err)
		}
		for _, r := range k.Resources {
			p := path.Clean(r)
			if _, ok := files[p]; !ok || path.IsAbs(r) || strings.Contains(r, "://") {
				return nil, fmt.Errorf("%s: resource %q is not a file in the directory (previewd supports file resources only)", display(kfile), r)
			}
			names = append(names, p)
		}
		m.images, m.labels = k.Images, k.CommonLabels
	} else {
		for name := range files {
			ext := path.Ext(name)
			if strings.Contains(name, "/") || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			names = append(names, name)
		}
		sort.Strings(names)
	}
	for _, p := range names {
		t, err := tmpl.Parse(display(p), string(files[p]))
		if err != nil {
			return nil, fmt.Errorf("parsing manifest: %w", err)
		}
		m.files = append(m.files, t)
	}
	return m, nil
}

// Render executes every template over d and returns the objects, in file
// order. Empty documents are skipped; a List is flattened.
func (m *Manifests) Render(d Data) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, t := range m.files {
		text, err := tmpl.Execute(t, d)
		if err != nil {
			return nil, fmt.Errorf("rendering manifest: %w", err)
		}
		objs, err := decodeYAML(t.Name(), []byte(text))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	for _, o := range out {
		m.kustomize(o)
	}
	return out, nil
}

// decodeYAML decodes the documents of a rendered manifest. An error names
// the file and the line of the rendered text it is on.
func decodeYAML(name string, text []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	doc := 0
	for _, c := range splitDocuments(text) {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(c.text), 4096)
		for {
			var obj map[string]any
			err := dec.Decode(&obj)
			if errors.Is(err, io.EOF) {
				break
			}
			doc++
			if err != nil {
				return nil, fmt.Errorf("%s:%d: document %d: %w", name, c.line+yamlLine(err)-1, doc, err)
			}
			if len(obj) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if u.GetKind() == "" || u.GetAPIVersion() == "" {
				return nil, fmt.Errorf("%s:%d: document %d has no kind or apiVersion", name, c.line, doc)
			}
			if u.IsList() {
				l, err := u.ToList()
				if err != nil {
					return nil, fmt.Errorf("%s:%d: document %d: %w", name, c.line, doc, err)
				}
				for i := range l.Items {
					out = append(out, &l.Items[i])
				}
				continue
			}
			if u.GetName() == "" {
				return nil, fmt.Errorf("%s:%d: document %d (%s) has no metadata.name", name, c.line, doc, u.GetKind())
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// chunk is one YAML document of a stream and the line it starts on.
type chunk struct {
	text []byte
	line int
}

// splitDocuments splits a YAML stream at its "---" lines.
func splitDocuments(text []byte) []chunk {
	var out []chunk
	start, line := 0, 1
	cur := chunk{line: 1}
	for start < len(text) {
		end := bytes.IndexByte(text[start:], '\n')
		next := len(text)
		if end >= 0 {
			next = start + end + 1
		}
		l := bytes.TrimRight(text[start:next], "\r\n")
		if bytes.Equal(l, []byte("---")) || bytes.HasPrefix(l, []byte("--- ")) {
			out = append(out, cur)
			cur = chunk{line: line + 1}
		} else {
			cur.text = append(cur.text, text[start:next]...)
		}
		start = next
		line++
	}
	return append(out, cur)
}

var yamlLineRE = regexp.MustCompile(`yaml: line (\d+):`)

// yamlLine is the line (within its document) a YAML error names, else 1.
func yamlLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
			return n
		}
	}
	return 1
}

// kustomize applies the kustomization's images and commonLabels.
func (m *Manifests) kustomize(o *unstructured.Unstructured) {
	if len(m.labels) > 0 {
		l := o.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		for k, v := range m.labels {
			l[k] = v
		}
		o.SetLabels(l)
	}
	if len(m.images) == 0 {
		return
	}
	path := []string{"spec", "template", "spec"}
	switch o.GetKind() {
	case "Pod":
		path = []string{"spec"}
	case "CronJob":
		path = []string{"spec", "jobTemplate", "spec", "template", "spec"}
	}
	spec, ok, _ := unstructured.NestedMap(o.Object, path...)
	if !ok {
		return
	}
	changed := false
	for _, field := range []string{"containers", "initContainers"} {
		cs, _ := spec[field].([]any)
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			img, _ := cm["image"].(string)
			if n, ok := m.setImage(img); ok {
				cm["image"] = n
				changed = true
			}
		}
	}
	if changed {
		unstructured.SetNestedMap(o.Object, spec, path...)
	}
}

func (m *Manifests) setImage(img string) (string, bool) {
	name, tag := img, ""
	if i := strings.Index(img, "@"); i >= 0 {
		name = img[:i]
	} else if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		name, tag = img[:i], img[i+1:]
	}
	for _, ki := range m.images {
		if ki.Name != name {
			continue
		}
		if ki.NewName != "" {
			name = ki.NewName
		}
		switch {
		case ki.Digest != "":
			return name + "@" + ki.Digest, true
		case ki.NewTag != "":
			return name + ":" + ki.NewTag, true
		case tag != "":
			return name + ":" + tag, true
		}
		return name, true
	}
	return img, false
}

// dataFor returns the template data of a release, rendering the namespace,
// image and URL templates in that order.
func (r *Runtime) dataFor(rel *env.Release) (Data, error) {
	d := Data{
		Key:        rel.Key,
		Kind:       string(rel.Kind),
		Number:     rel.Number,
		Branch:     rel.Branch,
		BranchSlug: env.Slug(rel.Branch, 63),
		SHA:        rel.SHA,
		ShortSHA:   env.ShortSHA(rel.SHA),
		Host:       rel.Key + "." + r.o.Domain,
		URL:        rel.URL,
		SecretName: SecretName,
		Production: rel.Production(),
	}
	var err error
	if d.Production {
		d.Namespace = r.o.ProductionNamespace
	} else if d.Namespace, err = tmpl.Execute(r.nsTmpl, d); err != nil {
		return d, fmt.Errorf("rendering namespace: %w", err)
	}
	if r.imageTmpl != nil {
		if d.Image, err = tmpl.Execute(r.imageTmpl, d); err != nil {
			return d, fmt.Errorf("rendering image: %w", err)
		}
	}
	if r.urlTmpl != nil {
		if d.URL, err = tmpl.Execute(r.urlTmpl, d); err != nil {
			return d, fmt.Errorf("rendering url: %w", err)
		}
	}
	return d, nil
}

// ingressURL returns the URL of the first Ingress rule's host: https when
// the Ingress's TLS covers it.
func ingressURL(objs []*unstructured.Unstructured) (string, bool) {
	for _, o := range objs {
		if o.GetKind() != "Ingress" {
			continue
		}
		rules, _, _ := unstructured.NestedSlice(o.Object, "spec", "rules")
		for _, rule := range rules {
			host, _ := rule.(map[string]any)["host"].(string)
			if host == "" || strings.Contains(host, "*") {
				continue
			}
			scheme := "http://"
			tls, _, _ := unstructured.NestedSlice(o.Object, "spec", "tls")
			for _, t := range tls {
				hosts, _ := t.(map[string]any)["hosts"].([]any)
				for _, h := range hosts {
					if h == host || wildcardCovers(fmt.Sprint(h), host) {
						scheme = "https://"
					}
				}
			}
			return scheme + host, true
		}
	}
	return "", false
}

func wildcardCovers(pattern, host string) bool {
	rest, ok := strings.CutPrefix(pattern, "*.")
	if !ok {
		return false
	}
	i := strings.IndexByte(host, '.')
	return i > 0 && host[i+1:] == rest
}
