package reconcile

import (
	"fmt"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// TestDecideLifecycle: the lifecycle's rows of Decide — sleep when idle
// or asked, wake, queue at the cap, expiry with its warning and revival,
// keep and extend, production exempt.
func TestDecideLifecycle(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	src := &env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "fix", SHA: "bbb"}
	kept := *src
	kept.Keep = true
	prod := &env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: "bbb"}
	life := env.Lifecycle{SleepAfter: 30 * time.Minute, TTL: 72 * time.Hour, WarnBefore: 12 * time.Hour, MaxRunning: 2}
	rec := func(status env.Status, mod ...func(*store.Record)) *store.Record {
		r := &store.Record{Environment: env.Environment{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Status: status, SHA: "bbb", CreatedAt: now.Add(-100 * time.Hour), UpdatedAt: now.Add(-time.Hour)}}
		for _, m := range mod {
			m(r)
		}
		return r
	}
	asProd := func(r *store.Record) { r.Key, r.Kind = env.ProductionKey, env.KindProduction }
	keptRec := func(r *store.Record) { r.Kept = true }
	sha := func(s string) func(*store.Record) { return func(r *store.Record) { r.SHA = s } }
	deployed := func(r *store.Record) { s := *src; r.Deployed = &s }
	extended := func(t time.Time) func(*store.Record) { return func(r *store.Record) { r.ExtendUntil = t } }
	warnedFor := func(t time.Time) func(*store.Record) { return func(r *store.Record) { r.WarnedFor = t } }
	deleted := func(r *store.Record) { t := now.Add(-time.Hour); r.DeletedAt = &t }
	queuedMsg := func(m string) func(*store.Record) { return func(r *store.Record) { r.Message = m } }
	full := &Admission{Place: 2, Of: 3}
	ago := func(d time.Duration) time.Time { return now.Add(-d) }

	type want struct {
		action Action
		reason string
		after  time.Duration
	}
	tests := map[string]struct {
		o    Observed
		want want
	}{
		"busy: look again when it would sleep":        {Observed{Desired: src, Record: rec(env.StatusReady), Running: true, RunningSHA: "bbb", Activity: ago(10 * time.Minute)}, want{Nothing, ReasonUpToDate, 20 * time.Minute}},
		"idle: sleep":                                 {Observed{Desired: src, Record: rec(env.StatusReady), Running: true, RunningSHA: "bbb", Activity: ago(31 * time.Minute)}, want{Sleep, ReasonIdle, 0}},
		"idle but kept by label":                      {Observed{Desired: &kept, Record: rec(env.StatusReady), Running: true, RunningSHA: "bbb", Activity: ago(80 * time.Hour)}, want{Nothing, ReasonUpToDate, 0}},
		"idle but kept by command":                    {Observed{Desired: src, Record: rec(env.StatusReady, keptRec), Running: true, RunningSHA: "bbb", Activity: ago(80 * time.Hour)}, want{Nothing, ReasonUpToDate, 0}},
		"asked to sleep":                              {Observed{Desired: src, Record: rec(env.StatusReady), Running: true, RunningSHA: "bbb", Activity: ago(time.Minute), SleepAsked: "by alice"}, want{Sleep, ReasonSleepRequested, 0}},
		"evicted":                                     {Observed{Desired: src, Record: rec(env.StatusReady), Running: true, RunningSHA: "bbb", Activity: ago(time.Minute), SleepAsked: "room", Evicted: true}, want{Sleep, ReasonEvicted, 0}},
		"kept, asked to sleep":                        {Observed{Desired: src, Record: rec(env.StatusReady, keptRec), Running: true, RunningSHA: "bbb", SleepAsked: "by alice"}, want{Sleep, ReasonSleepRequested, 0}},
		"production never sleeps":                     {Observed{Key: env.ProductionKey, Desired: prod, Record: rec(env.StatusReady, asProd), Running: true, RunningSHA: "bbb", Activity: ago(100 * time.Hour), SleepAsked: "x"}, want{Nothing, ReasonUpToDate, 0}},
		"production never queues":                     {Observed{Key: env.ProductionKey, Desired: prod}, want{Deploy, ReasonNew, 0}},
		"sleeping: stays asleep until expiry":         {Observed{Desired: src, Record: rec(env.StatusSleeping), Activity: ago(70 * time.Hour)}, want{Warn, ReasonExpiryWarning, 0}},
		"sleeping, warned: wait for expiry":           {Observed{Desired: src, Record: rec(env.StatusSleeping, warnedFor(ago(70*time.Hour).Add(72*time.Hour))), Activity: ago(70 * time.Hour)}, want{Nothing, ReasonAsleep, 2 * time.Hour}},
		"sleeping, still running (a crash mid-sleep)": {Observed{Desired: src, Record: rec(env.StatusSleeping, deployed), Activity: ago(time.Hour), Running: true, RunningSHA: src.SHA}, want{Sleep, ReasonSleepUnfinished, 0}},
		"sleeping, still running, woken":              {Observed{Desired: src, Record: rec(env.StatusSleeping, deployed), Activity: ago(time.Hour), Running: true, RunningSHA: src.SHA, Wake: true}, want{Wake, ReasonWakeRequested, 0}},
		"sleeping, woken":                             {Observed{Desired: src, Record: rec(env.StatusSleeping, deployed), Activity: ago(time.Hour), Wake: true}, want{Wake, ReasonWakeRequested, 0}},
		"sleeping, woken, cap full":                   {Observed{Desired: src, Record: rec(env.StatusSleeping), Activity: ago(time.Hour), Wake: true, Slot: full}, want{Queue, ReasonCapReached, 0}},
		"sleeping, a push":                            {Observed{Desired: src, Record: rec(env.StatusSleeping, sha("aaa")), Activity: now}, want{Deploy, ReasonNewCommit, 0}},
		"sleeping, a push, cap full":                  {Observed{Desired: src, Record: rec(env.StatusSleeping, sha("aaa")), Activity: now, Slot: full}, want{Queue, ReasonCapReached, 0}},
		"new, cap full":                               {Observed{Desired: src, Slot: full, Activity: now}, want{Queue, ReasonCapReached, 0}},
		"queued, same place":                          {Observed{Desired: src, Record: rec(env.StatusQueued, queuedMsg(full.Message(2))), Activity: ago(time.Hour), Slot: full}, want{Nothing, ReasonQueuedAlready, 71 * time.Hour}},
		"queued, new place":                           {Observed{Desired: src, Record: rec(env.StatusQueued, queuedMsg("queued: 3rd of 3 (maxRunning 2)")), Activity: ago(time.Hour), Slot: full}, want{Queue, ReasonCapReached, 0}},
		"queued, its turn, never deployed":            {Observed{Desired: src, Record: rec(env.StatusQueued), Activity: ago(time.Hour)}, want{Deploy, ReasonDequeued, 0}},
		"queued, its turn, was asleep":                {Observed{Desired: src, Record: rec(env.StatusQueued, deployed), Activity: ago(time.Hour)}, want{Wake, ReasonDequeued, 0}},
		"expired":                                     {Observed{Desired: src, Record: rec(env.StatusReady), Running: true, RunningSHA: "bbb", Activity: ago(73 * time.Hour)}, want{Expire, ReasonExpired, 0}},
		"expired while failed":                        {Observed{Desired: src, Record: rec(env.StatusFailed, func(r *store.Record) { r.FailedSHA = "bbb" }), Activity: ago(73 * time.Hour)}, want{Expire, ReasonExpired, 0}},
		"no activity known: from creation":            {Observed{Desired: src, Record: rec(env.StatusFailed, func(r *store.Record) { r.FailedSHA = "bbb" })}, want{Expire, ReasonExpired, 0}},
		"extended":                                    {Observed{Desired: src, Record: rec(env.StatusSleeping, extended(now.Add(48*time.Hour)), warnedFor(now.Add(48*time.Hour))), Activity: ago(73 * time.Hour)}, want{Nothing, ReasonAsleep, 48 * time.Hour}},
		"kept never expires":                          {Observed{Desired: &kept, Record: rec(env.StatusSleeping), Activity: ago(700 * time.Hour)}, want{Nothing, ReasonAsleep, 0}},
		"warn before expiry":                          {Observed{Desired: src, Record: rec(env.StatusFailed, func(r *store.Record) { r.FailedSHA = "bbb" }), Activity: ago(61 * time.Hour)}, want{Warn, ReasonExpiryWarning, 0}},
		"idle sleeps before it warns":                 {Observed{Desired: src, Record: rec(env.StatusReady), Running: true, RunningSHA: "bbb", Activity: ago(61 * time.Hour)}, want{Sleep, ReasonIdle, 0}},
		"expired, same commit: stays removed": {Observed{Desired: src, Record: rec(env.StatusDeleting, deleted), Down: true, DownReason: store.DownExpired, DownSHA: "bbb"},
			want{Nothing, ReasonExpiredAlready, 0}},
		"expired, a new commit revives": {Observed{Desired: src, Record: rec(env.StatusDeleting, deleted), Down: true, DownReason: store.DownExpired, DownSHA: "aaa", Activity: now},
			want{Deploy, ReasonRevived, 0}},
		"expired, a new commit, cap full": {Observed{Desired: src, Record: rec(env.StatusDeleting, deleted), Down: true, DownReason: store.DownExpired, DownSHA: "aaa", Activity: now, Slot: full},
			want{Queue, ReasonCapReached, 0}},
		"down on request stays down at a new commit": {Observed{Desired: src, Record: rec(env.StatusDeleting, deleted), Down: true, DownReason: store.DownRequested, DownSHA: ""},
			want{Nothing, ReasonDownAlready, 0}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o := tc.o
			if o.Key == "" {
				o.Key = "pr-7"
			}
			o.Listed, o.Now, o.Life, o.MaxRestarts = true, now, life, 5
			if o.Record != nil && o.Record.WarnedFor.IsZero() && tc.want.action != Warn && o.Record.DeletedAt == nil {
				// Rows not about the warning have had it.
				o.Record.WarnedFor = Expiry(o)
			}
			p := Decide(o)
			if p.Action != tc.want.action || p.Reason != tc.want.reason {
				t.Fatalf("Decide = %s/%s (%s), want %s/%s", p.Action, p.Reason, p.Message, tc.want.action, tc.want.reason)
			}
			if p.RequeueAfter != tc.want.after {
				t.Errorf("RequeueAfter = %s, want %s", p.RequeueAfter, tc.want.after)
			}
		})
	}
}

// TestAdmit: the cap's decision — free slots go first come first served,
// holders and production do not wait, eviction picks the least recently
// active running preview that is not kept.
func TestAdmit(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	running := func(k string, act int) SlotEntry {
		return SlotEntry{Key: k, Status: env.StatusReady, Activity: at(act)}
	}
	queued := func(k string, q int) SlotEntry { return SlotEntry{Key: k, Status: env.StatusQueued, QueuedAt: at(q)} }
	prod := SlotEntry{Key: env.ProductionKey, Status: env.StatusReady, Production: true}
	tests := map[string]struct {
		max      int
		evict    string
		entries  []SlotEntry
		claimed  []string
		evicting []string
		key      string
		want     Admission
	}{
		"no cap":                       {0, env.EvictNone, []SlotEntry{running("a", 0)}, nil, nil, "b", Admission{Admitted: true}},
		"a free slot":                  {2, env.EvictNone, []SlotEntry{prod, running("a", 0)}, nil, nil, "b", Admission{Admitted: true}},
		"full: last in the queue":      {2, env.EvictNone, []SlotEntry{prod, running("a", 0), running("b", 0), queued("c", 1)}, nil, nil, "d", Admission{Place: 2, Of: 2}},
		"full: a holder keeps its own": {2, env.EvictNone, []SlotEntry{running("a", 0), running("b", 0), queued("c", 1)}, nil, nil, "a", Admission{Admitted: true}},
		"a freed slot goes to the first": {2, env.EvictNone, []SlotEntry{running("a", 0), queued("c", 1), queued("d", 2)}, nil, nil, "d",
			Admission{Place: 2, Of: 2}},
		"the first gets it":       {2, env.EvictNone, []SlotEntry{running("a", 0), queued("c", 1), queued("d", 2)}, nil, nil, "c", Admission{Admitted: true}},
		"claims hold slots":       {2, env.EvictNone, []SlotEntry{running("a", 0), queued("c", 1)}, []string{"x"}, nil, "c", Admission{Place: 1, Of: 1}},
		"sleeping hold no slot":   {1, env.EvictNone, []SlotEntry{{Key: "a", Status: env.StatusSleeping}, {Key: "f", Status: env.StatusFailed}}, nil, nil, "b", Admission{Admitted: true}},
		"production never counts": {1, env.EvictNone, []SlotEntry{prod, {Key: env.ProductionKey + "x", Status: env.StatusBuilding}}, nil, nil, "b", Admission{Place: 1, Of: 1}},
		"evict the least recent":  {2, env.EvictIdle, []SlotEntry{running("a", 5), running("b", 3)}, nil, nil, "n", Admission{Place: 1, Of: 1, Evict: "b"}},
		"never evict a kept one":  {2, env.EvictIdle, []SlotEntry{running("a", 5), {Key: "b", Status: env.StatusReady, Activity: at(3), Kept: true}}, nil, nil, "n", Admission{Place: 1, Of: 1, Evict: "a"}},
		"an eviction under way":   {1, env.EvictIdle, []SlotEntry{running("a", 5), running("b", 3)}, nil, []string{"b"}, "n", Admission{Place: 1, Of: 1, Evict: "a"}},
		"an eviction is for the one ahead": {1, env.EvictIdle, []SlotEntry{running("b", 3), queued("q", 1)}, nil, []string{"b"}, "n",
			Admission{Place: 2, Of: 2, Evict: ""}},
		"nothing to evict while building": {1, env.EvictIdle, []SlotEntry{{Key: "a", Status: env.StatusBuilding}}, nil, nil, "n", Admission{Place: 1, Of: 1}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			set := func(ks []string) map[string]bool {
				m := map[string]bool{}
				for _, k := range ks {
					m[k] = true
				}
				return m
			}
			got := Admit(tc.max, tc.evict, tc.entries, set(tc.claimed), set(tc.evicting), tc.key, at(10))
			if got != tc.want {
				t.Errorf("Admit = %+v, want %+v", got, tc.want)
			}
		})
	}
	if m := (Admission{Place: 2, Of: 3}).Message(10); m != "queued: 2nd of 3 (maxRunning 10)" {
		t.Errorf("Message = %q", m)
	}
	for n, w := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 102: "102nd"} {
		if got := ordinal(n); got != w {
			t.Errorf("ordinal(%d) = %q, want %q", n, got, w)
		}
	}
}

// BenchmarkAdmit: the cap's decision with 1,000 previews queued and ten
// running (goal: ≤ 5 ms).
func BenchmarkAdmit(b *testing.B) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var entries []SlotEntry
	for i := range 10 {
		entries = append(entries, SlotEntry{Key: fmt.Sprintf("run-%d", i), Status: env.StatusReady, Activity: t0.Add(time.Duration(i) * time.Second)})
	}
	for i := range 1000 {
		entries = append(entries, SlotEntry{Key: fmt.Sprintf("pr-%d", i), Status: env.StatusQueued, QueuedAt: t0.Add(time.Duration(1000-i) * time.Millisecond)})
	}
	claimed, evicting := map[string]bool{}, map[string]bool{}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		a := Admit(10, env.EvictIdle, entries, claimed, evicting, "pr-new", t0.Add(time.Hour))
		if a.Admitted || a.Place != 1001 {
			b.Fatalf("Admit = %+v", a)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/decision")
}
