package reconcile

import (
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// TestDecidePathFilters: a change whose diff touches none of its path
// filters gets no environment, or keeps the one it has at its commit.
func TestDecidePathFilters(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	paths := []string{"apps/web/**", "packages/ui/**"}
	src := &env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "feat", SHA: "bbbbbbbbbb", Base: "main", BaseSHA: "0000000000"}
	prodSrc := &env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: "bbbbbbbbbb"}
	old := env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "feat", SHA: "aaaaaaaaaa"}
	rec := func(status env.Status, sha, msg string, deployed *env.Source) *store.Record {
		return &store.Record{Environment: env.Environment{Key: "pr-7", Kind: env.KindPullRequest, Status: status, SHA: sha, Message: msg, UpdatedAt: now.Add(-time.Hour)}, Deployed: deployed}
	}
	docs := []string{"docs/a.md"}
	web := []string{"docs/a.md", "apps/web/x.go"}
	notDeployed := "no changes under apps/web/**, packages/ui/**; not deployed"
	stillServing := "no changes under apps/web/**, packages/ui/** in bbbbbbb; still serving aaaaaaa"

	type want struct {
		action Action
		reason string
		sha    string
	}
	tests := map[string]struct {
		o    Observed
		want want
	}{
		"docs only, new":            {Observed{Desired: src, Paths: paths, Touched: docs}, want{Skip, ReasonNoPathChanges, "bbbbbbbbbb"}},
		"docs only, skipped":        {Observed{Desired: src, Paths: paths, Touched: docs, Record: rec(env.StatusPending, "", notDeployed, nil)}, want{Nothing, ReasonSkippedAlready, ""}},
		"under web, new":            {Observed{Desired: src, Paths: paths, Touched: web}, want{Deploy, ReasonNew, "bbbbbbbbbb"}},
		"under web, after skip":     {Observed{Desired: src, Paths: paths, Touched: web, Record: rec(env.StatusPending, "", notDeployed, nil)}, want{Deploy, ReasonNewCommit, "bbbbbbbbbb"}},
		"empty diff":                {Observed{Desired: src, Paths: paths, Touched: []string{}}, want{Skip, ReasonNoPathChanges, ""}},
		"unknown diff deploys":      {Observed{Desired: src, Paths: paths, Touched: nil}, want{Deploy, ReasonNew, ""}},
		"no filters":                {Observed{Desired: src, Touched: docs}, want{Deploy, ReasonNew, ""}},
		"production always":         {Observed{Key: env.ProductionKey, Desired: prodSrc, Paths: paths, Touched: docs}, want{Deploy, ReasonNew, ""}},
		"redeploy asked":            {Observed{Desired: src, Paths: paths, Touched: docs, Redeploy: true}, want{Deploy, ReasonNew, ""}},
		"docs push keeps running":   {Observed{Desired: src, Paths: paths, Touched: docs, Record: rec(env.StatusReady, old.SHA, "aaaaaaa ready in 1s", &old), Running: true, RunningSHA: old.SHA}, want{Skip, ReasonNoPathChanges, "bbbbbbbbbb"}},
		"docs push, said already":   {Observed{Desired: src, Paths: paths, Touched: docs, Record: rec(env.StatusReady, old.SHA, stillServing, &old), Running: true, RunningSHA: old.SHA}, want{Nothing, ReasonSkippedAlready, ""}},
		"docs push, old crashed":    {Observed{Desired: src, Paths: paths, Touched: docs, Record: rec(env.StatusReady, old.SHA, stillServing, &old), MaxRestarts: 3, Now: now}, want{Restart, ReasonExited, old.SHA}},
		"docs push, web push after": {Observed{Desired: src, Paths: paths, Touched: web, Record: rec(env.StatusReady, old.SHA, stillServing, &old), Running: true, RunningSHA: old.SHA}, want{Deploy, ReasonNewCommit, "bbbbbbbbbb"}},
		"deployed at this sha":      {Observed{Desired: src, Paths: paths, Touched: docs, Record: rec(env.StatusReady, src.SHA, "ready", src), Running: true, RunningSHA: src.SHA}, want{Nothing, ReasonUpToDate, ""}},
		"held first":                {Observed{Desired: &env.Source{Key: "pr-7", SHA: "bbbbbbbbbb", Hold: "waiting for checks"}, Paths: paths, Touched: docs}, want{Hold, ReasonHold, ""}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			o := tt.o
			o.Listed = true
			if o.Key == "" {
				o.Key = "pr-7"
			}
			p := Decide(o)
			if p.Action != tt.want.action || p.Reason != tt.want.reason {
				t.Fatalf("Decide = %s %s (%q), want %s %s", p.Action, p.Reason, p.Message, tt.want.action, tt.want.reason)
			}
			if tt.want.sha != "" && p.Source.SHA != tt.want.sha {
				t.Errorf("plan acts on %s, want %s", p.Source.SHA, tt.want.sha)
			}
			switch name {
			case "docs only, new":
				if p.Message != notDeployed {
					t.Errorf("message = %q, want %q", p.Message, notDeployed)
				}
			case "docs push keeps running":
				if p.Message != stillServing {
					t.Errorf("message = %q, want %q", p.Message, stillServing)
				}
			}
		})
	}
}
