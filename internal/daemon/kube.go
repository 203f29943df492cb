package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/previewd/previewd/internal/argocd"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/reconcile"
	"github.com/previewd/previewd/internal/runtime/kube"
	"github.com/previewd/previewd/internal/store"
)

// kubeParts are what the kubernetes and argocd runtimes add to the daemon:
// the runtime, the plugin generator and leader election. All are zero for
// the local runtime.
type kubeParts struct {
	rt     *kube.Runtime
	plugin http.Handler
	lead   *config.LeaderElection
}

func isKube(cfg *config.Config) bool {
	return cfg.Runtime.Kind == "kubernetes" || cfg.Runtime.Kind == "argocd"
}

// openKube builds the kubernetes runtime when the config asks for it.
// Manifests inside the repository are fetched into the object cache the
// local runtime uses, with gitEnv's credentials; prod gives production's
// source, whose manifests untrusted changes render.
func openKube(cfg *config.Config, st *store.Store, synced func() bool, log *slog.Logger, cache *git.Cache,
	gitEnv func(context.Context) ([]string, error), prod func(context.Context) (env.Source, error),
) (kubeParts, error) {
	if !isKube(cfg) {
		return kubeParts{}, nil
	}
	k := cfg.Runtime.Kubernetes
	rc, err := kube.RESTConfig(k.Kubeconfig, k.Context, k.QPS, k.Burst)
	if err != nil {
		return kubeParts{}, err
	}
	migrate := k.Migrate.Command
	if len(migrate) == 0 && strings.TrimSpace(cfg.Migrate) != "" {
		migrate = []string{"/bin/sh", "-c", cfg.Migrate}
	}
	rt, err := kube.New(kube.Options{
		Config:              rc,
		Manifests:           k.Manifests,
		InRepo:              true,
		ProxyService:        k.Proxy.Service,
		ProxyPort:           k.Proxy.Port,
		Cache:               cache,
		GitEnv:              gitEnv,
		Production:          prod,
		ApplyManifests:      cfg.Runtime.Kind == "kubernetes",
		Namespace:           k.Namespace,
		Instance:            cfg.Instance,
		ProductionNamespace: k.ProductionNamespace,
		Image:               k.Image,
		URL:                 k.URL,
		Domain:              cfg.Domain,
		WaitForImage:        k.WaitForImage,
		ImagePollInterval:   k.ImagePollInterval.Duration,
		PullSecrets:         k.PullSecrets,
		RolloutTimeout:      k.RolloutTimeout.Duration,
		DeleteTimeout:       k.DeleteTimeout.Duration,
		MigrateTimeout:      k.Migrate.Timeout.Duration,
		MigrateCommand:      migrate,
		MigrateJob:          k.Migrate.Job,
		ConfigMigrate:       cfg.Migrate,
		Logger:              log,
	}, st)
	if err != nil {
		return kubeParts{}, err
	}
	p := kubeParts{rt: rt}
	if k.LeaderElection.Enabled {
		p.lead = &k.LeaderElection
	}
	if cfg.Runtime.Kind == "argocd" || k.ArgoCD.Token != "" {
		p.plugin = argocd.New(argocd.Options{Token: k.ArgoCD.Token, Store: st, Describe: describe(rt), Synced: synced, Logger: log})
	}
	return p, nil
}

// production returns a function that asks the forge for production's
// current source.
func production(src reconcile.Source) func(context.Context) (env.Source, error) {
	return func(ctx context.Context) (env.Source, error) {
		if r, ok := src.(reconcile.Refresher); ok {
			s, ok, err := r.Refresh(ctx, env.ProductionKey)
			if err != nil {
				return env.Source{}, err
			}
			if !ok {
				return env.Source{}, errors.New("the forge lists no production branch")
			}
			return s, nil
		}
		all, err := src.List(ctx)
		if err != nil {
			return env.Source{}, err
		}
		for _, s := range all {
			if s.Production() {
				return s, nil
			}
		}
		return env.Source{}, errors.New("the forge lists no production branch")
	}
}

// describe returns the runtime's part of an environment's plugin
// generator parameters.
func describe(rt *kube.Runtime) func(e env.Environment) (argocd.Params, error) {
	return func(e env.Environment) (argocd.Params, error) {
		rel := &env.Release{Source: env.Source{Key: e.Key, Kind: e.Kind, Number: e.Number, Branch: e.Branch, SHA: e.SHA}, URL: e.URL}
		d, err := rt.Data(rel)
		if err != nil {
			return argocd.Params{}, err
		}
		return argocd.Params{Namespace: d.Namespace, Host: d.Host, Image: d.Image, Secret: d.SecretName}, nil
	}
}

// lead starts leader election when configured and returns a channel closed
// once this replica leads (at once without election). Losing the Lease
// ends the daemon with an error (its pod is restarted and campaigns
// again), so two replicas never reconcile at once.
func (d *Daemon) lead(ctx context.Context, cancel context.CancelFunc, errc chan<- error) (<-chan struct{}, error) {
	if d.kube.lead == nil {
		c := make(chan struct{})
		close(c)
		return c, nil
	}
	le := d.kube.lead
	leading, stopped, err := kube.Elect(ctx, d.kube.rt.Clientset(), kube.LeaderOptions{
		Namespace: le.Namespace, Name: le.Name,
		LeaseDuration: le.LeaseDuration.Duration, RenewDeadline: le.RenewDeadline.Duration, RetryPeriod: le.RetryPeriod.Duration,
		Logger: d.log,
	})
	if err != nil {
		return nil, err
	}
	go func() {
		<-stopped
		if ctx.Err() == nil {
			select {
			case errc <- errors.New("lost the leader election lease"):
			default:
			}
			cancel()
		}
	}()
	return leading, nil
}

// whenLeading runs f once this replica leads, unless ctx ends first.
func whenLeading(ctx context.Context, leading <-chan struct{}, f func(context.Context)) {
	select {
	case <-leading:
		f(ctx)
	case <-ctx.Done():
	}
}
