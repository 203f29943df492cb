package store

import "testing"

func TestDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		if down, err := s.IsDown(ctx, "pr-1"); err != nil || down {
			t.Fatalf("IsDown before = %v, %v; want false", down, err)
		}
		if err := s.SetDown(ctx, "pr-1", "token:ci"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetDown(ctx, "pr-1", "token:other"); err != nil {
			t.Fatal(err)
		}
		// A second handle on the same database (a restart) sees it.
		if down, err := b.open(t).IsDown(ctx, "pr-1"); err != nil || !down {
			t.Fatalf("IsDown after SetDown = %v, %v; want true", down, err)
		}
		if down, err := s.IsDown(ctx, "pr-2"); err != nil || down {
			t.Fatalf("IsDown(pr-2) = %v, %v; want false", down, err)
		}
		if got, err := s.Downs(ctx); err != nil || len(got) != 1 || got[0].Key != "pr-1" || got[0].By != "token:ci" || got[0].Time.IsZero() {
			t.Fatalf("Downs = %+v, %v; want pr-1 by token:ci", got, err)
		}
		if was, err := s.ClearDown(ctx, "pr-1"); err != nil || !was {
			t.Fatalf("ClearDown = %v, %v; want true", was, err)
		}
		if was, err := s.ClearDown(ctx, "pr-1"); err != nil || was {
			t.Fatalf("second ClearDown = %v, %v; want false", was, err)
		}
		if down, err := s.IsDown(ctx, "pr-1"); err != nil || down {
			t.Fatalf("IsDown after ClearDown = %v, %v; want false", down, err)
		}
	})
}
