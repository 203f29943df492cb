package reconcile

import (
	"context"
	"errors"
	"strings"
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

// fakeSpecs is a Specs of our own: a spec and touched files per SHA.
type fakeSpecs struct {
	specs   map[string]env.AppSpec
	bad     map[string]error
	touched map[string][]string // by SHA
	since   []string            // the since of each Touched
}

func (s *fakeSpecs) Spec(ctx context.Context, src env.Source) (env.AppSpec, error) {
	if err := s.bad[src.SHA]; err != nil {
		return env.AppSpec{}, err
	}
	return s.specs[src.SHA], nil
}

func (s *fakeSpecs) Touched(ctx context.Context, src env.Source, since string) ([]string, error) {
	s.since = append(s.since, since)
	return s.touched[src.SHA], nil
}

// specRuntime is fakeRuntime that records the spec each release came with.
type specRuntime struct {
	*fakeRuntime
	runs map[string]string // SHA -> Spec.Run at Deploy
}

func (r *specRuntime) Deploy(ctx context.Context, rel *env.Release) error {
	if rel.Spec != nil {
		r.runs[rel.SHA] = rel.Spec.Run
	}
	return r.fakeRuntime.Deploy(ctx, rel)
}

// TestActSpecsAndPathFilters: the runtime gets each commit's spec; a bad
// repository file fails the environment at that commit with the field
// named; a change touching no filter gets a pending record that says
// why, and a later push of that kind leaves what runs alone.
func TestActSpecsAndPathFilters(t *testing.T) {
	paths := []string{"apps/web/**"}
	const shaC = "cccccccccccccccccccccccccccccccccccccccc"
	const shaD = "dddddddddddddddddddddddddddddddddddddddd"
	specs := &fakeSpecs{
		specs: map[string]env.AppSpec{shaA: {Run: "./a", Paths: paths}, shaB: {Run: "./b", Paths: paths}, shaD: {Run: "./d", Paths: paths}},
		bad:   map[string]error{shaC: &env.StepError{Step: "repo file", Err: errors.New(".previewd.yaml at ccccccc: runtime.local.env is not allowed in .previewd.yaml: secrets stay in previewd's config (line 1)")}},
		touched: map[string][]string{
			shaA: {"apps/web/x.go"},
			shaB: {"docs/a.md"},
			shaD: {"apps/web/y.go"},
		},
	}
	var rt *specRuntime
	f := newFixture(t, func(o *Options) {
		o.Specs = specs
		rt = &specRuntime{fakeRuntime: o.Runtime.(*fakeRuntime), runs: map[string]string{}}
		o.Runtime = rt
	})
	withBase := func(key, sha string) env.Source {
		s := branch(key, sha)
		s.Base, s.BaseSHA = "main", "0123456789012345678901234567890123456789"
		return s
	}

	// web touches a filter: deployed with its commit's spec.
	f.want(withBase("web", shaA), withBase("docs", shaB), withBase("bad", shaC))
	f.mustReconcile("web")
	if r := f.record("web"); r.Status != env.StatusReady || rt.runs[shaA] != "./a" {
		t.Fatalf("web = %s %q; ran %q", r.Status, r.Message, rt.runs)
	}
	// docs touches none: pending, saying why, nothing made.
	f.mustReconcile("docs")
	r := f.record("docs")
	if want := "no changes under apps/web/**; not deployed"; r.Status != env.StatusPending || r.Message != want || len(f.items("docs")) != 0 || f.rt.prepared != 1 {
		t.Errorf("docs = %s %q, items %v, prepared %d", r.Status, r.Message, f.items("docs"), f.rt.prepared)
	}
	n := len(f.events("docs"))
	f.mustReconcile("docs")
	if len(f.events("docs")) != n {
		t.Error("a second look at a skipped change saved again")
	}
	// A bad repository file fails its environment at that commit.
	if _, err := f.reconcile("bad"); !IsTerminal(err) {
		t.Errorf("bad: %v, want a terminal error", err)
	}
	if r := f.record("bad"); r.Status != env.StatusFailed || r.FailedSHA != shaC || !strings.Contains(r.Message, "runtime.local.env is not allowed in .previewd.yaml") || f.rt.prepared != 1 {
		t.Errorf("bad = %s %q (failed at %s), prepared %d", r.Status, r.Message, r.FailedSHA, f.rt.prepared)
	}

	// A docs-only push to web: compared with the deployed commit, and
	// web keeps serving A.
	f.want(withBase("web", shaB), withBase("docs", shaB))
	specs.since = nil
	f.mustReconcile("web")
	r = f.record("web")
	if r.Status != env.StatusReady || r.SHA != shaA || f.rt.running["web"] != shaA || !strings.Contains(r.Message, "still serving aaaaaaa") {
		t.Errorf("web after a docs push = %s at %s %q, running %s", r.Status, r.SHA, r.Message, f.rt.running["web"])
	}
	if len(specs.since) != 1 || specs.since[0] != shaA {
		t.Errorf("Touched since %q, want the deployed commit", specs.since)
	}
	// A push touching a filter deploys again.
	f.want(withBase("web", shaD))
	f.mustReconcile("web")
	if r := f.record("web"); r.Status != env.StatusReady || r.SHA != shaD || rt.runs[shaD] != "./d" {
		t.Errorf("web at D = %s at %s, ran %q", r.Status, r.SHA, rt.runs)
	}
}
