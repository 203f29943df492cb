package store

import (
	"testing"

	"github.com/previewd/previewd/internal/env"
)

// TestDBTierColumn: the tier a database was made with is stored on every
// backend, survives other updates and upserts, and a revival after
// removal forgets it (the database was dropped with the environment).
func TestDBTierColumn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		src := env.Source{Key: "pr-1", Kind: env.KindPullRequest, Number: 1, Branch: "x"}
		if err := s.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
		if r, err := s.GetRecord(ctx, "pr-1"); err != nil || r.DBTier != "" {
			t.Fatalf("a new environment's tier is %q (%v), want empty", r.DBTier, err)
		}
		tier := env.DBTierClone
		if err := s.Set(ctx, "pr-1", Update{DBTier: &tier}); err != nil {
			t.Fatal(err)
		}
		msg := "ready"
		if err := s.Set(ctx, "pr-1", Update{Message: &msg}); err != nil {
			t.Fatal(err)
		}
		if err := s.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
		recs, err := s.LiveRecords(ctx)
		if err != nil || len(recs) != 1 || recs[0].DBTier != env.DBTierClone {
			t.Fatalf("live records %+v (%v), want pr-1 at tier clone", recs, err)
		}
		if err := s.Set(ctx, "pr-1", Update{Deleted: true}); err != nil {
			t.Fatal(err)
		}
		if err := s.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.GetRecord(ctx, "pr-1"); r.DBTier != "" {
			t.Errorf("a revived environment kept the tier %q of its dropped database", r.DBTier)
		}
	})
}
