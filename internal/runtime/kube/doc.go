// Package kube is the runtime that gives each environment its own
// Kubernetes namespace. It renders the configured manifests (Go templates
// over the environment) and applies them with server-side apply under the
// field manager "previewd", together with a namespace and a Secret holding
// every variable of the release. Everything applied is labelled with
// previewd's labels and recorded in the environment's inventory before it
// is applied, so objects that leave the templates are pruned and teardown
// (deleting the namespace and waiting until it is gone) finds everything
// even after a crash. Migrations run as a Job in the release's image: the
// commit's own migrate (its .previewd.yaml's, as "/bin/sh -c") when it is
// not the config's, none when that is empty, else the configured command;
// a Job template wins over a commit's migrate, which is then reported as a
// warning (migrate.go). The Job carries a hash of its pod template, so a
// completed Job of another command at the same SHA is replaced, not
// reused. A migration rehearsal (env.Release.Rehearsal) never touches
// the environment's Secret or migration Job: it runs afresh as its own Job
// (previewd-rehearse-<shortsha>, or the template's Job with "-rehearsal",
// labelled previewd.dev/rehearse, not previewd.dev/migrate) reading its own
// Secret (previewd-env-rehearsal: .SecretName when the template renders,
// and any literal reference to previewd-env is pointed at it; a template
// reading neither is not rehearsed: env.ErrNotRehearsable, the rollout
// goes on), and both are deleted once it finished.
// A rollout is done when every Deployment is Available. An environment's
// logs are those of its Deployments' and its latest migration Job's pods;
// Follow streams them and, from a watch of the environment's pods, those
// that appear later (a rollout, the next migration, a rehearsal's, tagged
// "rehearse") (follow.go).
// Every template is parsed and run by internal/tmpl, as validation does.
//
// The manifests and the migrate Job template are read at each
// environment's own commit when they are paths inside the app's
// repository: the commit is fetched into the object cache (internal/git)
// and the directory read from it in memory, parsed once per (SHA, path).
// An untrusted change (a fork) is rendered with production's manifests.
// An absolute path is a directory of this machine, read at every render.
//
// Sleep scales an environment's Deployments and StatefulSets to 0 and
// marks its namespace asleep (Running is then false), keeping everything
// else; Deploy of a release wakes it, its forced apply taking back the
// replicas the manifests declare. Usage prices what the running pods
// request. With a proxy Service configured, Router forwards preview hosts
// routed to previewd to a ready endpoint of the environment's Service,
// from watched EndpointSlices.
//
// In argocd mode it only provisions the namespace and the Secret; Argo CD
// applies the app through previewd's plugin generator.
package kube
