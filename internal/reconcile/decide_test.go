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
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	updated := func(t time.Time) func(*store.Record) { return func(r *store.Record) { r.UpdatedAt = t } }
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
		"crashed too often, just now": {State{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(5), updated(now.Add(-time.Minute))), MaxRestarts: 5, Now: now}, GiveUp},
		// Five crashes last week, each recovered from, and a day of
		// running since: a new crash is restarted, not given up on.
		"crashed again after long run": {State{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(5), updated(now.Add(-24*time.Hour))), MaxRestarts: 5, Now: now}, Restart},
		"failed this sha":              {State{Desired: src, Listed: true, Record: rec(env.StatusFailed, "bbb", failedAt("bbb"))}, Nothing},
		"failed, new sha":              {State{Desired: src, Listed: true, Record: rec(env.StatusFailed, "aaa", failedAt("aaa"))}, Deploy},
		"failed transiently":           {State{Desired: src, Listed: true, Record: rec(env.StatusFailed, "bbb")}, Deploy},
		"interrupted build":            {State{Desired: src, Listed: true, Record: rec(env.StatusBuilding, "bbb")}, Deploy},
		"interrupted migrate":          {State{Desired: src, Listed: true, Record: rec(env.StatusMigrating, "bbb")}, Deploy},
		"branch gone":                  {State{Listed: true, Record: rec(env.StatusReady, "bbb")}, Teardown},
		"branch gone, not listed yet":  {State{Listed: false, Record: rec(env.StatusReady, "bbb")}, Nothing},
		"production branch gone":       {State{Listed: true, Record: rec(env.StatusReady, "bbb", prod)}, Nothing},
		"removed, leftovers":           {State{Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted), Items: items}, Teardown},
		"removed, clean":               {State{Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted)}, Nothing},
		"never known":                  {State{Listed: true}, Nothing},
		"interrupted teardown":         {State{Listed: true, Record: rec(env.StatusDeleting, "bbb"), Items: items}, Teardown},
		"branch back after removal":    {State{Desired: src, Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted)}, Deploy},
		"held":                         {State{Desired: &held, Listed: true}, Hold},
		"held, already pending":        {State{Desired: &held, Listed: true, Record: rec(env.StatusPending, "", func(r *store.Record) { r.Message = held.Hold })}, Nothing},
		"held while running old":       {State{Desired: &held, Listed: true, Record: rec(env.StatusReady, "aaa"), Running: true, RunningSHA: "aaa"}, Hold},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Decide(tt.s); got != tt.want {
				t.Fatalf("Decide = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestChanged(t *testing.T) {
	src := func(key, sha, hold string) env.Source { return env.Source{Key: key, SHA: sha, Hold: hold} }
	live := []env.Environment{
		{Key: "same", SHA: "a", Status: env.StatusReady},
		{Key: "moved", SHA: "a", Status: env.StatusReady},
		{Key: "gone", SHA: "a", Status: env.StatusReady},
		{Key: "building", SHA: "a", Status: env.StatusBuilding},
		{Key: "failed", SHA: "a", Status: env.StatusFailed},
		{Key: "held", SHA: "", Status: env.StatusPending, Message: "waiting for checks: ci"},
	}
	desired := map[string]env.Source{
		"same": src("same", "a", ""), "moved": src("moved", "b", ""), "building": src("building", "a", ""),
		"failed": src("failed", "a", ""), "held": src("held", "c", "waiting for checks: ci"), "new": src("new", "n", ""),
	}
	items := map[string][]env.Item{"leftover": {{Kind: env.ItemWorkDir, Name: "/x"}}, "same": {{Kind: env.ItemWorkDir, Name: "/y"}}}
	got := map[string]bool{}
	for _, k := range changed(desired, live, items, false) {
		if got[k] {
			t.Errorf("%s listed twice", k)
		}
		got[k] = true
	}
	want := map[string]bool{"moved": true, "gone": true, "building": true, "held": true, "new": true, "leftover": true}
	if len(got) != len(want) {
		t.Errorf("changed = %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("changed lacks %s", k)
		}
	}
	if n := len(changed(desired, live, items, true)); n != 8 {
		t.Errorf("full resync lists %d keys, want 8", n)
	}
}
