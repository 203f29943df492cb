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

// TestDBTierAskedColumn: the tier a pull request asked for by command is
// stored on every backend, apart from the tier made, and kept across a
// removal and revival (it is the pull request's choice, as a label is).
func TestDBTierAskedColumn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		src := env.Source{Key: "pr-2", Kind: env.KindPullRequest, Number: 2, Branch: "y"}
		if err := s.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
		asked, made := env.DBTierClone, env.DBTierSchema
		if err := s.Set(ctx, "pr-2", Update{DBTierAsked: &asked, DBTier: &made}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.GetRecord(ctx, "pr-2"); err != nil || r.DBTierAsked != asked || r.DBTier != made {
			t.Fatalf("record %+v (%v), want asked clone, made schema", r, err)
		}
		if err := s.Set(ctx, "pr-2", Update{Deleted: true}); err != nil {
			t.Fatal(err)
		}
		if err := s.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
		r, err := s.GetRecord(ctx, "pr-2")
		if err != nil || r.DBTierAsked != asked || r.DBTier != "" {
			t.Errorf("revived: asked %q made %q (%v), want the ask kept and the made tier forgotten", r.DBTierAsked, r.DBTier, err)
		}
		none := ""
		if err := s.Set(ctx, "pr-2", Update{DBTierAsked: &none}); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.GetRecord(ctx, "pr-2"); r.DBTierAsked != "" {
			t.Errorf("cleared ask reads %q", r.DBTierAsked)
		}
	})
}
