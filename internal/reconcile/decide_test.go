package reconcile

import (
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

func TestDecide(t *testing.T) {
	src := &env.Source{Key: "feat", Kind: env.KindBranch, Branch: "feat", SHA: "bbb"}
	rec := func(status env.Status, sha string, mod ...func(*store.Record)) *store.Record {
		r := &store.Record{Environment: env.Environment{Key: "feat", Kind: env.KindBranch, Status: status, SHA: sha}}
		for _, m := range mod {
			m(r)
		}
		return r
	}
	deleted := func(r *store.Record) { now := time.Now(); r.DeletedAt = &now }
	prod := func(r *store.Record) { r.Kind = env.KindProduction; r.Key = env.ProductionKey }
	failedAt := func(sha string) func(*store.Record) { return func(r *store.Record) { r.FailedSHA = sha } }
	restarts := func(n int) func(*store.Record) { return func(r *store.Record) { r.Restarts = n } }
	held := *src
	held.Hold = "waiting for checks: ci"
	items := []env.Item{{Kind: env.ItemWorkDir, Name: "/x"}}

	tests := map[string]struct {
		s    State
		want Action
	}{
		"new":                         {State{Desired: src, Listed: true}, Deploy},
		"ready and running":           {State{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb"), Running: true, RunningSHA: "bbb"}, Nothing},
		"new commit":                  {State{Desired: src, Listed: true, Record: rec(env.StatusReady, "aaa"), Running: true, RunningSHA: "aaa"}, Deploy},
		"crashed":                     {State{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb"), MaxRestarts: 5}, Restart},
		"crashed too often":           {State{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(5)), MaxRestarts: 5}, GiveUp},
		"failed this sha":             {State{Desired: src, Listed: true, Record: rec(env.StatusFailed, "bbb", failedAt("bbb"))}, Nothing},
		"failed, new sha":             {State{Desired: src, Listed: true, Record: rec(env.StatusFailed, "aaa", failedAt("aaa"))}, Deploy},
		"failed transiently":          {State{Desired: src, Listed: true, Record: rec(env.StatusFailed, "bbb")}, Deploy},
		"interrupted build":           {State{Desired: src, Listed: true, Record: rec(env.StatusBuilding, "bbb")}, Deploy},
		"interrupted migrate":         {State{Desired: src, Listed: true, Record: rec(env.StatusMigrating, "bbb")}, Deploy},
		"branch gone":                 {State{Listed: true, Record: rec(env.StatusReady, "bbb")}, Teardown},
		"branch gone, not listed yet": {State{Listed: false, Record: rec(env.StatusReady, "bbb")}, Nothing},
		"production branch gone":      {State{Listed: true, Record: rec(env.StatusReady, "bbb", prod)}, Nothing},
		"removed, leftovers":          {State{Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted), Items: items}, Teardown},
		"removed, clean":              {State{Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted)}, Nothing},
		"never known":                 {State{Listed: true}, Nothing},
		"interrupted teardown":        {State{Listed: true, Record: rec(env.StatusDeleting, "bbb"), Items: items}, Teardown},
		"branch back after removal":   {State{Desired: src, Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted)}, Deploy},
		"held":                        {State{Desired: &held, Listed: true}, Hold},
		"held, already pending":       {State{Desired: &held, Listed: true, Record: rec(env.StatusPending, "", func(r *store.Record) { r.Message = held.Hold })}, Nothing},
		"held while running old":      {State{Desired: &held, Listed: true, Record: rec(env.StatusReady, "aaa"), Running: true, RunningSHA: "aaa"}, Hold},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Decide(tt.s); got != tt.want {
				t.Fatalf("Decide = %v, want %v", got, tt.want)
			}
		})
	}
}
