package reconcile

import (
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

func TestDecide(t *testing.T) {
	src := &env.Source{Key: "feat", Kind: env.KindBranch, Branch: "feat", SHA: "bbb"}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	rec := func(status env.Status, sha string, mod ...func(*store.Record)) *store.Record {
		r := &store.Record{Environment: env.Environment{Key: "feat", Kind: env.KindBranch, Status: status, SHA: sha, UpdatedAt: now.Add(-time.Hour)}}
		for _, m := range mod {
			m(r)
		}
		return r
	}
	deleted := func(r *store.Record) { now := time.Now(); r.DeletedAt = &now }
	prod := func(r *store.Record) { r.Kind = env.KindProduction; r.Key = env.ProductionKey }
	failedAt := func(sha string) func(*store.Record) { return func(r *store.Record) { r.FailedSHA = sha } }
	restarts := func(n int) func(*store.Record) { return func(r *store.Record) { r.Restarts = n } }
	updated := func(t time.Time) func(*store.Record) { return func(r *store.Record) { r.UpdatedAt = t } }
	deployed := func(s env.Source) func(*store.Record) { return func(r *store.Record) { r.Deployed = &s } }
	held := *src
	held.Hold = "waiting for checks: ci"
	items := []env.Item{{Kind: env.ItemWorkDir, Name: "/x"}}
	obs := func(o Observed) Observed {
		if o.Key == "" {
			o.Key = "feat"
		}
		return o
	}

	type want struct {
		action   Action
		reason   string
		terminal bool
		after    time.Duration // RequeueAfter
		sha      string        // Plan.Source.SHA, when it matters
	}
	tests := map[string]struct {
		o    Observed
		want want
	}{
		"new":               {Observed{Desired: src, Listed: true}, want{action: Deploy, reason: ReasonNew}},
		"ready and running": {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb"), Running: true, RunningSHA: "bbb"}, want{action: Nothing, reason: ReasonUpToDate}},
		"new commit":        {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "aaa"), Running: true, RunningSHA: "aaa"}, want{action: Deploy, reason: ReasonNewCommit, sha: "bbb"}},
		"crashed":           {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb"), MaxRestarts: 5}, want{action: Restart, reason: ReasonExited}},
		// The process exited 40ms ago, after two restarts: the third
		// waits for 400ms from the exit.
		"crashed, backoff": {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(2), updated(now.Add(-time.Second))), MaxRestarts: 5, Now: now, ExitedAt: now.Add(-40 * time.Millisecond)},
			want{action: Wait, reason: ReasonBackoff, after: 360 * time.Millisecond}},
		"crashed, backoff over": {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(2), updated(now.Add(-time.Second))), MaxRestarts: 5, Now: now, ExitedAt: now.Add(-500 * time.Millisecond)},
			want{action: Restart, reason: ReasonExited}},
		// A restart failed 100ms ago (the record's last change) after
		// one restart: the next waits 200ms from then.
		"restart failed, backoff": {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(1), updated(now.Add(-100*time.Millisecond))), MaxRestarts: 5, Now: now, ExitedAt: now.Add(-time.Second)},
			want{action: Wait, reason: ReasonBackoff, after: 100 * time.Millisecond}},
		// The process is gone when previewd starts: no exit was seen,
		// the last change is old, so it restarts at once.
		"gone at start":               {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(1)), MaxRestarts: 5, Now: now}, want{action: Restart, reason: ReasonExited}},
		"crashed too often":           {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(5)), MaxRestarts: 5}, want{action: GiveUp, reason: ReasonCrashLoop, terminal: true}},
		"crashed too often, just now": {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(5), updated(now.Add(-time.Minute))), MaxRestarts: 5, Now: now}, want{action: GiveUp, reason: ReasonCrashLoop, terminal: true}},
		// A failed restart is counted in Restarts: once they are used
		// up, Decide gives up.
		"restart failed, used up": {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(3), updated(now.Add(-time.Millisecond))), MaxRestarts: 3, Now: now}, want{action: GiveUp, reason: ReasonCrashLoop, terminal: true}},
		"no restarts allowed":     {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb"), MaxRestarts: 0}, want{action: GiveUp, reason: ReasonCrashLoop, terminal: true}},
		// Five crashes last week, each recovered from, and a day of
		// running since: a new crash is restarted, not given up on.
		"crashed again after long run": {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb", restarts(5), updated(now.Add(-24*time.Hour))), MaxRestarts: 5, Now: now}, want{action: Restart, reason: ReasonExited}},
		"running another sha":          {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb"), Running: true, RunningSHA: "aaa", MaxRestarts: 5}, want{action: Restart, reason: ReasonExited}},
		"failed this sha":              {Observed{Desired: src, Listed: true, Record: rec(env.StatusFailed, "bbb", failedAt("bbb"))}, want{action: Nothing, reason: ReasonFailedSHA, terminal: true}},
		"failed this sha, redeploy":    {Observed{Desired: src, Listed: true, Record: rec(env.StatusFailed, "bbb", failedAt("bbb")), Redeploy: true}, want{action: Deploy, reason: ReasonRedeploy}},
		"gave up, redeploy":            {Observed{Desired: src, Listed: true, Record: rec(env.StatusFailed, "bbb", failedAt("bbb"), restarts(5)), Redeploy: true, MaxRestarts: 5}, want{action: Deploy, reason: ReasonRedeploy}},
		"ready, redeploy":              {Observed{Desired: src, Listed: true, Record: rec(env.StatusReady, "bbb"), Running: true, RunningSHA: "bbb", Redeploy: true}, want{action: Nothing, reason: ReasonUpToDate}},
		"failed, new sha":              {Observed{Desired: src, Listed: true, Record: rec(env.StatusFailed, "aaa", failedAt("aaa"))}, want{action: Deploy, reason: ReasonNewCommit}},
		"failed transiently":           {Observed{Desired: src, Listed: true, Record: rec(env.StatusFailed, "bbb")}, want{action: Deploy, reason: ReasonRetry}},
		"interrupted build":            {Observed{Desired: src, Listed: true, Record: rec(env.StatusBuilding, "bbb")}, want{action: Deploy, reason: ReasonInterrupted}},
		"interrupted migrate":          {Observed{Desired: src, Listed: true, Record: rec(env.StatusMigrating, "bbb")}, want{action: Deploy, reason: ReasonInterrupted}},
		"waiting for image":            {Observed{Desired: src, Listed: true, Record: rec(env.StatusPending, "bbb")}, want{action: Deploy, reason: ReasonInterrupted}},
		"branch gone":                  {Observed{Listed: true, Record: rec(env.StatusReady, "bbb")}, want{action: Teardown, reason: ReasonChangeGone}},
		"branch gone, not listed yet":  {Observed{Listed: false, Record: rec(env.StatusReady, "bbb")}, want{action: Nothing, reason: ReasonNotListed}},
		"production branch gone":       {Observed{Key: env.ProductionKey, Listed: true, Record: rec(env.StatusReady, "bbb", prod)}, want{action: Nothing, reason: ReasonProtected}},
		// Production's leftovers without a record are not torn down
		// either (act would refuse).
		"production leftovers":      {Observed{Key: env.ProductionKey, Listed: true, Items: items}, want{action: Nothing, reason: ReasonProtected}},
		"removed, leftovers":        {Observed{Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted), Items: items}, want{action: Teardown, reason: ReasonLeftovers}},
		"leftovers, no record":      {Observed{Listed: true, Items: items}, want{action: Teardown, reason: ReasonLeftovers}},
		"removed, clean":            {Observed{Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted)}, want{action: Nothing, reason: ReasonGone}},
		"never known":               {Observed{Listed: true}, want{action: Nothing, reason: ReasonGone}},
		"interrupted teardown":      {Observed{Listed: true, Record: rec(env.StatusDeleting, "bbb"), Items: items}, want{action: Teardown, reason: ReasonChangeGone}},
		"branch back after removal": {Observed{Desired: src, Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted)}, want{action: Deploy, reason: ReasonNew}},
		// Put down on request while the change is open: removed, then
		// nothing until up; production is never down.
		"down, running":          {Observed{Desired: src, Listed: true, Down: true, Record: rec(env.StatusReady, "bbb"), Running: true, RunningSHA: "bbb"}, want{action: Teardown, reason: ReasonDown}},
		"down, leftovers":        {Observed{Desired: src, Listed: true, Down: true, Record: rec(env.StatusDeleting, "bbb", deleted), Items: items}, want{action: Teardown, reason: ReasonDown}},
		"down, removed":          {Observed{Desired: src, Listed: true, Down: true, Record: rec(env.StatusDeleting, "bbb", deleted)}, want{action: Nothing, reason: ReasonDownAlready, terminal: true}},
		"down, new commit":       {Observed{Desired: src, Listed: true, Down: true, Record: rec(env.StatusDeleting, "aaa", deleted)}, want{action: Nothing, reason: ReasonDownAlready, terminal: true}},
		"down, never deployed":   {Observed{Desired: src, Listed: true, Down: true}, want{action: Nothing, reason: ReasonDownAlready, terminal: true}},
		"down, held":             {Observed{Desired: &held, Listed: true, Down: true}, want{action: Nothing, reason: ReasonDownAlready, terminal: true}},
		"down, change gone":      {Observed{Listed: true, Down: true, Record: rec(env.StatusReady, "bbb")}, want{action: Teardown, reason: ReasonChangeGone}},
		"down, production":       {Observed{Key: env.ProductionKey, Desired: &env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: "bbb"}, Listed: true, Down: true, Record: rec(env.StatusReady, "bbb", prod), Running: true, RunningSHA: "bbb"}, want{action: Nothing, reason: ReasonUpToDate}},
		"up after down":          {Observed{Desired: src, Listed: true, Record: rec(env.StatusDeleting, "bbb", deleted)}, want{action: Deploy, reason: ReasonNew}},
		"held":                   {Observed{Desired: &held, Listed: true}, want{action: Hold, reason: ReasonHold}},
		"held, already pending":  {Observed{Desired: &held, Listed: true, Record: rec(env.StatusPending, "", func(r *store.Record) { r.Message = held.Hold })}, want{action: Nothing, reason: ReasonHeldAlready}},
		"held while running old": {Observed{Desired: &held, Listed: true, Record: rec(env.StatusReady, "aaa"), Running: true, RunningSHA: "aaa"}, want{action: Hold, reason: ReasonHold}},
		// The forge has not answered since previewd started: what was
		// deployed keeps serving, restarted when it is gone, and nothing
		// else is decided.
		"forge silent, deployed running": {Observed{Record: rec(env.StatusReady, "bbb", deployed(*src)), Running: true, RunningSHA: "bbb", MaxRestarts: 5}, want{action: Nothing, reason: ReasonServingDeployed}},
		"forge silent, deployed gone":    {Observed{Record: rec(env.StatusReady, "bbb", deployed(*src)), MaxRestarts: 5}, want{action: Restart, reason: ReasonExited, sha: "bbb"}},
		"forge silent, backoff": {Observed{Record: rec(env.StatusReady, "bbb", deployed(*src), restarts(1), updated(now.Add(-time.Second))), MaxRestarts: 5, Now: now, ExitedAt: now.Add(-50 * time.Millisecond)},
			want{action: Wait, reason: ReasonBackoff, after: 150 * time.Millisecond}},
		"forge silent, crash loop": {Observed{Record: rec(env.StatusReady, "bbb", deployed(*src), restarts(5)), MaxRestarts: 5}, want{action: GiveUp, reason: ReasonCrashLoop, terminal: true}},
		// Building a newer SHA when previewd stopped: the old one
		// serves; the build waits for the forge.
		"forge silent, newer sha interrupted": {Observed{Record: rec(env.StatusBuilding, "ccc", deployed(*src)), Running: true, RunningSHA: "bbb"}, want{action: Nothing, reason: ReasonServingDeployed}},
		"forge silent, failed sha":            {Observed{Record: rec(env.StatusFailed, "bbb", deployed(*src), failedAt("bbb")), Redeploy: true}, want{action: Nothing, reason: ReasonServingDeployed}},
		"forge silent, removed":               {Observed{Record: rec(env.StatusDeleting, "bbb", deployed(*src), deleted)}, want{action: Nothing, reason: ReasonNotListed}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := Decide(obs(tt.o))
			got := want{action: p.Action, reason: p.Reason, terminal: p.Terminal, after: p.RequeueAfter}
			if tt.want.sha != "" {
				got.sha = p.Source.SHA
			}
			if got != tt.want {
				t.Fatalf("Decide = %+v (%s), want %+v", got, p.Message, tt.want)
			}
			if p.Message == "" {
				t.Errorf("plan has no message")
			}
			if p.Action != Nothing && p.Source.Key != obs(tt.o).Key {
				t.Errorf("plan acts on %q", p.Source.Key)
			}
		})
	}
}

func TestRestartBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 100 * time.Millisecond, 1: 200 * time.Millisecond, 3: 800 * time.Millisecond, 20: 30 * time.Second} {
		if got := RestartBackoff(n); got != want {
			t.Errorf("RestartBackoff(%d) = %s, want %s", n, got, want)
		}
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
