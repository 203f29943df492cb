package store

import "testing"

func TestTrusted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		if err := s.Trust(ctx, "Octocat", "github:alice"); err != nil {
			t.Fatal(err)
		}
		if err := s.Trust(ctx, "octocat", "github:bob"); err != nil {
			t.Fatal(err)
		}
		got, err := b.open(t).Trusted(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Login != "octocat" || got[0].By != "github:alice" || got[0].Time.IsZero() {
			t.Fatalf("Trusted = %+v, want octocat by github:alice", got)
		}
		if ok, err := s.Untrust(ctx, "OCTOCAT"); err != nil || !ok {
			t.Fatalf("Untrust = %v, %v; want true", ok, err)
		}
		if ok, err := s.Untrust(ctx, "octocat"); err != nil || ok {
			t.Fatalf("second Untrust = %v, %v; want false", ok, err)
		}
		if got, err := s.Trusted(ctx); err != nil || len(got) != 0 {
			t.Fatalf("Trusted after revoke = %+v, %v", got, err)
		}
	})
}
