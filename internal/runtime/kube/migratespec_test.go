package kube

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/env"
)

func TestMigrationOf(t *testing.T) {
	argv := []string{"./app", "migrate"}
	tests := map[string]struct {
		spec          *env.AppSpec
		configMigrate string
		command       []string
		job           bool
		want          migration
	}{
		"no spec":                       {nil, "./app migrate", argv, false, migration{command: argv}},
		"the config's migrate":          {&env.AppSpec{Migrate: "./app migrate"}, "./app migrate", argv, false, migration{command: argv}},
		"the commit's own":              {&env.AppSpec{Migrate: "npm run migrate"}, "./app migrate", argv, false, migration{command: []string{"/bin/sh", "-c", "npm run migrate"}}},
		"the commit's own, no config's": {&env.AppSpec{Migrate: "npm run migrate"}, "", nil, false, migration{command: []string{"/bin/sh", "-c", "npm run migrate"}}},
		"the commit's empty":            {&env.AppSpec{Migrate: ""}, "./app migrate", argv, false, migration{}},
		"the commit's blank":            {&env.AppSpec{Migrate: "  "}, "./app migrate", argv, false, migration{}},
		"both empty keeps the argv":     {&env.AppSpec{}, "", argv, false, migration{command: argv}},
		"the file's empty, both empty":  {&env.AppSpec{MigrateSet: true}, "", argv, false, migration{}},
		"the file's, same as config's":  {&env.AppSpec{Migrate: "./app migrate", MigrateSet: true}, "./app migrate", argv, false, migration{command: []string{"/bin/sh", "-c", "./app migrate"}}},
		"nothing configured":            {&env.AppSpec{}, "", nil, false, migration{}},
		"a job template":                {&env.AppSpec{Migrate: "./app migrate"}, "./app migrate", nil, true, migration{template: true}},
		"a job template, no spec":       {nil, "", nil, true, migration{template: true}},
		"a job template wins over a commit's": {
			&env.AppSpec{Migrate: "npm run migrate", From: ".previewd.yaml at abc1234"}, "./app migrate", nil, true,
			migration{template: true, warning: "warning: migrate of .previewd.yaml at abc1234 not applied: runtime.kubernetes.migrate.job runs the migrations"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := migrationOf(tc.spec, tc.configMigrate, tc.command, tc.job)
			if got.template != tc.want.template || !slices.Equal(got.command, tc.want.command) || got.warning != tc.want.warning {
				t.Errorf("migrationOf = %+v; want %+v", got, tc.want)
			}
		})
	}
}

// jobID tells one Job from another of the same name.
type jobID struct{ uid, hash string }

// TestMigrateFromSpec: the migration Job follows the commit's migrate
// when it is not the config's, in the API server.
func TestMigrateFromSpec(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.runtime(Options{MigrateCommand: []string{"./app", "migrate"}, ConfigMigrate: "./app migrate", MigrateTimeout: 20 * time.Second})
	command := func(ns, name string) (string, jobID) {
		t.Helper()
		j, err := f.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(j.Spec.Template.Spec.Containers[0].Command, "|"), jobID{uid: string(j.UID), hash: j.Annotations[AnnotationMigrateHash]}
	}
	migrate := func(rel *env.Release) {
		t.Helper()
		ns := "preview-" + rel.Key
		f.finishJob(ns, "previewd-migrate-"+env.ShortSHA(rel.SHA), true)
		if err := r.Migrate(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}

	// The commit's own migrate runs as sh -c in the release's image.
	own := uniqueKey("own")
	f.cleanup("preview-" + own)
	f.markAvailable("preview-" + own)
	rel := release(own, sha('5'))
	rel.Spec = &env.AppSpec{Migrate: "npm run migrate"}
	job := "previewd-migrate-" + env.ShortSHA(rel.SHA)
	migrate(rel)
	got, first := command("preview-"+own, job)
	if got != "/bin/sh|-c|npm run migrate" || first.hash == "" {
		t.Errorf("job command = %q, hash %q; want /bin/sh -c npm run migrate, hashed", got, first.hash)
	}
	// Done: not run again, and the apply keeps it.
	migrate(rel)
	if _, again := command("preview-"+own, job); again != first {
		t.Errorf("the completed job was replaced: %+v, then %+v", first, again)
	}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	command("preview-"+own, job)

	// The same SHA with another migrate (its spec read again) gets a new
	// Job, not the completed one of the other command.
	rel.Spec = &env.AppSpec{Migrate: "npm run migrate:all"}
	migrate(rel)
	got, second := command("preview-"+own, job)
	if got != "/bin/sh|-c|npm run migrate:all" || second.uid == first.uid || second.hash == first.hash {
		t.Errorf("after the migrate changed: command %q, job %+v (before %+v)", got, second, first)
	}

	// A spec with the config's migrate keeps MigrateCommand.
	same := uniqueKey("same")
	f.cleanup("preview-" + same)
	rel = release(same, sha('6'))
	rel.Spec = &env.AppSpec{Migrate: "./app migrate"}
	migrate(rel)
	if got, _ := command("preview-"+same, "previewd-migrate-"+env.ShortSHA(rel.SHA)); got != "./app|migrate" {
		t.Errorf("with the config's migrate: command %q; want ./app migrate", got)
	}

	// An empty migrate in the commit runs no Job.
	none := uniqueKey("none")
	f.cleanup("preview-" + none)
	rel = release(none, sha('7'))
	rel.Spec = &env.AppSpec{Migrate: ""}
	if err := r.Migrate(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if js, err := f.cs.BatchV1().Jobs("preview-"+none).List(ctx, metav1.ListOptions{}); err != nil || len(js.Items) > 0 {
		t.Errorf("an empty migrate made jobs: %v, %v", js, err)
	}
	// ... and the apply prunes the Job of an earlier migrate.
	rel = release(own, sha('5'))
	rel.Spec = &env.AppSpec{Migrate: ""}
	if err := r.Deploy(ctx, rel); err != nil {
		t.Fatal(err)
	}
	old, err := f.cs.BatchV1().Jobs("preview-"+own).Get(ctx, job, metav1.GetOptions{})
	if err == nil && old.DeletionTimestamp == nil {
		t.Error("the job of the earlier migrate was not pruned once the commit's migrate is empty")
	}
}

// TestMigrateJobTemplateOverSpec: a Job template wins over the commit's
// migrate, which the release's warnings report.
func TestMigrateJobTemplateOverSpec(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "job.yaml")
	tm := `apiVersion: batch/v1
kind: Job
metadata:
  name: "tmpl-migrate-{{.ShortSHA}}"
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: "{{.Image}}"
        command: [./app, migrate, --from-template]
`
	if err := os.WriteFile(file, []byte(tm), 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.runtime(Options{MigrateJob: file, ConfigMigrate: "./app migrate", MigrateTimeout: 20 * time.Second})
	key := uniqueKey("tmpl")
	ns := "preview-" + key
	f.cleanup(ns)
	rel := release(key, sha('8'))
	rel.Spec = &env.AppSpec{Migrate: "npm run migrate", From: ".previewd.yaml at 8888888"}
	name := "tmpl-migrate-" + env.ShortSHA(rel.SHA)
	f.finishJob(ns, name, true)
	if err := r.Migrate(ctx, rel); err != nil {
		t.Fatal(err)
	}
	j, err := f.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(j.Spec.Template.Spec.Containers[0].Command, " "); got != "./app migrate --from-template" {
		t.Errorf("job command = %q; want the template's", got)
	}
	want := "warning: migrate of .previewd.yaml at 8888888 not applied: runtime.kubernetes.migrate.job runs the migrations"
	if !slices.Equal(rel.Warnings, []string{want}) {
		t.Errorf("warnings = %q; want %q", rel.Warnings, want)
	}
}
