package store

import (
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestLifecycleColumns: activity, expiry, the queue's order, keep,
// extend, warnings and usage are stored on every backend; a revival after
// removal starts them again; an expired mark keeps its commit.
func TestLifecycleColumns(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		src := env.Source{Key: "pr-1", Kind: env.KindPullRequest, Number: 1, Branch: "x"}
		if err := s.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
		r, err := s.GetRecord(ctx, "pr-1")
		if err != nil {
			t.Fatal(err)
		}
		if r.LastActivityAt == nil || r.Usage == nil || r.Usage.Since.IsZero() {
			t.Fatalf("a new environment has no activity or usage: %+v", r.Environment)
		}
		act := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
		exp := act.Add(72 * time.Hour)
		queued, until, warned, yes := act.Add(time.Second), act.Add(100*time.Hour), exp, true
		if err := s.SetActivity(ctx, "pr-1", act, exp); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "pr-1", Update{QueuedAt: &queued, ExtendUntil: &until, WarnedFor: &warned, Kept: &yes}); err != nil {
			t.Fatal(err)
		}
		used := map[string]Used{"pr-1": {RunSeconds: 15, CPUSeconds: 1.5, GBSeconds: 3, MemoryBytes: 200e6}}
		for range 2 {
			if err := s.AddUsage(ctx, used); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddUsage(ctx, map[string]Used{"pr-1": {MemoryBytes: 100e6}}); err != nil {
			t.Fatal(err)
		}
		r, err = s.GetRecord(ctx, "pr-1")
		if err != nil {
			t.Fatal(err)
		}
		u := r.Usage
		if !r.LastActivityAt.Equal(act) || !r.ExpiresAt.Equal(exp) || !r.QueuedAt.Equal(queued) || !r.ExtendUntil.Equal(until) || !r.WarnedFor.Equal(warned) || !r.Kept {
			t.Errorf("lifecycle fields: %+v", r)
		}
		if u.RunSeconds != 30 || u.CPUSeconds != 3 || u.GBSeconds != 6 || u.PeakMemoryBytes != 200e6 {
			t.Errorf("usage %+v", *u)
		}
		zero := time.Time{}
		if err := s.Set(ctx, "pr-1", Update{QueuedAt: &zero}); err != nil {
			t.Fatal(err)
		}
		if r, _ = s.GetRecord(ctx, "pr-1"); !r.QueuedAt.IsZero() {
			t.Errorf("QueuedAt not cleared: %s", r.QueuedAt)
		}

		if err := s.SetExpired(ctx, "pr-1", "abc"); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "pr-1", Update{Deleted: true}); err != nil {
			t.Fatal(err)
		}
		m, down, err := s.DownMarkOf(ctx, "pr-1")
		if err != nil || !down || m.Reason != DownExpired || m.SHA != "abc" || m.By != "previewd" {
			t.Fatalf("expired mark %+v %v %v", m, down, err)
		}
		if err := s.SetDown(ctx, "pr-2", "github:a"); err != nil {
			t.Fatal(err)
		}
		if m, _, _ := s.DownMarkOf(ctx, "pr-2"); m.Reason != DownRequested {
			t.Errorf("a down mark's reason is %q", m.Reason)
		}
		if err := s.SetExpired(ctx, "pr-2", "def"); err != nil {
			t.Fatal(err)
		}
		if m, _, _ := s.DownMarkOf(ctx, "pr-2"); m.Reason != DownRequested || m.By != "github:a" {
			t.Errorf("an expiry replaced a down mark: %+v", m)
		}
		if err := s.SetExpired(ctx, "pr-3", "def"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetDown(ctx, "pr-3", "github:b"); err != nil {
			t.Fatal(err)
		}
		if m, _, _ := s.DownMarkOf(ctx, "pr-3"); m.Reason != DownRequested || m.SHA != "" || m.By != "github:b" {
			t.Errorf("down after an expiry: %+v", m)
		}
		// Revived: the lifecycle starts again.
		if err := s.Upsert(ctx, src); err != nil {
			t.Fatal(err)
		}
		r, _ = s.GetRecord(ctx, "pr-1")
		if r.Kept || r.ExpiresAt != nil || !r.ExtendUntil.IsZero() || !r.WarnedFor.IsZero() || r.Usage.RunSeconds != 0 || r.Usage.PeakMemoryBytes != 0 || r.LastActivityAt.Equal(act) {
			t.Errorf("a revived environment kept its old lifecycle: %+v usage %+v", r, *r.Usage)
		}
	})
}
