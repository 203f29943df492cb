package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/env"
	ghforge "github.com/previewd/previewd/internal/forge/github"
	"github.com/previewd/previewd/internal/githubapi"
	"github.com/previewd/previewd/internal/notify"
	"github.com/previewd/previewd/internal/reconcile"
)

// openGitHub returns the github forge's source.
func openGitHub(cfg *config.Config, log *slog.Logger) (*ghforge.Source, error) {
	g := cfg.Forge.GitHub
	co := githubapi.Options{
		APIURL: g.APIURL, Owner: g.Owner, Repo: g.Repo, Token: g.Token,
		RequestTimeout: g.RequestTimeout.Duration, Logger: log,
	}
	if g.App.Enabled() {
		co.App = &githubapi.App{ID: g.App.ID, InstallationID: g.App.InstallationID, PrivateKeyFile: g.App.PrivateKeyFile}
	}
	c, err := githubapi.New(co)
	if err != nil {
		return nil, err
	}
	return ghforge.NewSource(c, ghforge.SourceOptions{
		CloneURL:         g.CloneURL,
		ProductionBranch: g.ProductionBranch,
		Filter: ghforge.Filter{
			Labels: g.Labels, ExcludeLabels: g.ExcludeLabels,
			Branches: g.Branches, IgnoreBranches: g.IgnoreBranches, TargetBranches: g.TargetBranches,
			Drafts: g.Drafts, ForkLabel: g.Forks.Label, TrustForks: g.Forks.Trusted,
		},
		WaitForChecks: g.WaitForChecks,
		KeepLabel:     cfg.Lifecycle.KeepLabel,
		Fresh:         g.PollInterval.Duration,
		FullEvery:     max(10*g.PollInterval.Duration, time.Minute),
		Logger:        log,
	}), nil
}

// gitHubParts are what the github forge adds to the daemon: the notifier,
// the webhook and git's credentials. All are nil for other forges.
type gitHubParts struct {
	notifier *notify.GitHub
	webhook  http.Handler
	gitEnv   func(context.Context) ([]string, error)
	// revoke is /preview revoke's code path, for the API and dashboard.
	revoke func(ctx context.Context, login string) (bool, error)
}

func (d *Daemon) gitHub(ctx context.Context, src reconcile.Source) (gitHubParts, error) {
	s, ok := src.(*ghforge.Source)
	if !ok {
		return gitHubParts{}, nil
	}
	g := d.cfg.Forge.GitHub
	trusted, err := d.store.Trusted(ctx)
	if err != nil {
		return gitHubParts{}, err
	}
	logins := make([]string, len(trusted))
	for i, c := range trusted {
		logins[i] = c.Login
	}
	s.SetTrusted(logins)
	n := notify.NewGitHub(notify.GitHubOptions{
		Client: s.Client(), Deployments: g.DeploymentsEnabled(), CommitStatus: g.CommitStatus,
		DashboardURL: g.DashboardURL, Logger: d.log,
	})
	enqueue := func(key string) { d.rec.Enqueue(key) }
	cmds := ghforge.NewCommands(ghforge.CommandOptions{
		Client: s.Client(), Source: s, Ledger: d.store, Reply: n,
		Redeploy: func(key string) { d.rec.Redeploy(key) }, Enqueue: enqueue, Logger: d.log,
		ResetDB: func(key string) { d.rec.ResetDB(key) },
		DBTier: func(ctx context.Context, key, tier string) (env.TierChoice, error) {
			return d.rec.AskTier(ctx, key, tier)
		},
		Down: func(ctx context.Context, key, actor string) error { return d.rec.Down(ctx, key, actor) },
		Up:   func(ctx context.Context, key string) (bool, error) { return d.rec.Up(ctx, key) },
		// The reconciler is made after the forge: these call it late.
		Sleep: func(ctx context.Context, key, actor string) error { return d.rec.Sleep(ctx, key, actor) },
		Wake:  func(key string) { d.rec.Wake(key) },
		Extend: func(ctx context.Context, key string, by time.Duration) (time.Time, error) {
			return d.rec.Extend(ctx, key, by)
		},
		Keep: func(ctx context.Context, key string, on bool) error { return d.rec.Keep(ctx, key, on) },
	})
	return gitHubParts{
		notifier: n,
		webhook: ghforge.NewWebhook(ghforge.WebhookOptions{
			Secret: g.WebhookSecret, Owner: g.Owner, Repo: g.Repo, ProductionBranch: g.ProductionBranch,
			Source: s, Enqueue: enqueue, Commands: cmds, Logger: d.log,
		}),
		gitEnv: s.GitEnv,
		revoke: cmds.Revoke,
	}, nil
}

func (p gitHubParts) notifiers() []reconcile.Notifier {
	if p.notifier == nil {
		return nil
	}
	return []reconcile.Notifier{p.notifier}
}

func (p gitHubParts) webhooks() map[string]http.Handler {
	if p.webhook == nil {
		return nil
	}
	return map[string]http.Handler{"github": p.webhook}
}

// start runs the notifier until ctx ends.
func (p gitHubParts) start(ctx context.Context) {
	if p.notifier != nil {
		go p.notifier.Run(ctx)
	}
}

// wait waits for the notices still being sent.
func (p gitHubParts) wait() {
	if p.notifier != nil {
		p.notifier.Wait()
	}
}
