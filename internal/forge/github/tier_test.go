package github

import (
	"context"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
)

// TestDBTierLabel: a preview:db=<tier> label (any case) sets the
// Source's DBTier; several different ones, or an unknown tier, come
// through as written, for the reconciler to refuse with a message; a
// label taken off is seen on the next read.
func TestDBTierLabel(t *testing.T) {
	fake := ghtest.New(t, "Codertocat", "Hello-World")
	fake.SetBranch("main", sha(1))
	fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	fake.OpenPR(ghtest.PR{Number: 3, HeadSHA: sha(3), Labels: []string{"bug", "Preview:DB=Clone"}})
	fake.OpenPR(ghtest.PR{Number: 4, HeadSHA: sha(4), Labels: []string{"preview:db=schema", "preview:db=clone", "preview:db=clone"}})
	fake.OpenPR(ghtest.PR{Number: 5, HeadSHA: sha(5), Labels: []string{"preview:db=clnoe"}})
	fake.OpenPR(ghtest.PR{Number: 6, HeadSHA: sha(6), Labels: []string{"preview:db", "preview:dbx=clone"}})
	s := newSource(t, fake, SourceOptions{Fresh: time.Hour})
	ctx := context.Background()
	srcs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, src := range srcs {
		got[src.Key] = src.DBTier
	}
	want := map[string]string{"production": "", "pr-2": "", "pr-3": env.DBTierClone, "pr-4": "clone, schema", "pr-5": "clnoe", "pr-6": ""}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: DBTier %q, want %q", k, got[k], w)
		}
	}

	fake.UpdatePR(3, func(pr *ghtest.PR) { pr.Labels = []string{"preview:db=empty"} })
	s.Invalidate("pr-3")
	src, ok, err := s.Refresh(ctx, "pr-3")
	if err != nil || !ok || src.DBTier != env.DBTierEmpty {
		t.Errorf("after relabeling: Refresh = %q %v %v, want empty", src.DBTier, ok, err)
	}
	fake.UpdatePR(3, func(pr *ghtest.PR) { pr.Labels = nil })
	s.Invalidate("pr-3")
	if src, _, _ := s.Refresh(ctx, "pr-3"); src.DBTier != "" {
		t.Errorf("after unlabeling: DBTier %q", src.DBTier)
	}
}
