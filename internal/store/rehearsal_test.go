package store

import (
	"errors"
	"reflect"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

func TestRehearsals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		if _, err := s.Rehearsal(ctx, "pr-1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Rehearsal before any: %v; want ErrNotFound", err)
		}
		r := env.Rehearsal{SHA: "a1", Engine: "postgres", Seconds: 1.5, StatementCount: 2,
			Tables:   []env.RehearsalTable{{Name: "orders", Rows: 1200000, Rewritten: true, Lock: "AccessExclusiveLock", LockSeconds: 1.2}},
			Findings: []env.RehearsalFinding{{Kind: env.FindingRewrite, Table: "orders"}}, Failing: []string{"rewrite"}}
		for _, sha := range []string{"a0", "a1"} {
			r.SHA = sha
			if err := s.SetRehearsal(ctx, "pr-1", r); err != nil {
				t.Fatal(err)
			}
		}
		// Another Store on the same data (another process) reads it.
		got, err := b.open(t).Rehearsal(ctx, "pr-1")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("got %+v\nwant %+v", got, r)
		}
	})
}
