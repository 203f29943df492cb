package reconcile

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// sleepyRuntime is the fake runtime that can also sleep and be metered.
type sleepyRuntime struct {
	*fakeRuntime
	sleepErr error
	samples  map[string]runtime.Sample
}

var (
	_ runtime.Sleeper = (*sleepyRuntime)(nil)
	_ runtime.Meter   = (*sleepyRuntime)(nil)
)

func (f *sleepyRuntime) Sleep(ctx context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sleepErr != nil {
		return f.sleepErr
	}
	sha, ok := f.running[key]
	delete(f.running, key)
	if ok {
		return f.inv.DeleteItem(ctx, key, env.Item{Kind: env.ItemProcess, Name: key + "@" + sha})
	}
	return nil
}

func (f *sleepyRuntime) Usage(ctx context.Context) (map[string]runtime.Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]runtime.Sample{}
	for k, s := range f.samples {
		if _, ok := f.running[k]; ok {
			out[k] = s
		}
	}
	return out, nil
}

// notices records what notifiers are told.
type notices struct {
	mu  sync.Mutex
	got []env.Notice
}

func (n *notices) Notify(ctx context.Context, no env.Notice) error {
	n.mu.Lock()
	n.got = append(n.got, no)
	n.mu.Unlock()
	return nil
}

func (n *notices) last(key string) env.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.got) - 1; i >= 0; i-- {
		if n.got[i].Env.Key == key {
			return n.got[i]
		}
	}
	return env.Notice{}
}

func newLifecycleFixture(t *testing.T, life env.Lifecycle) (*fixture, *sleepyRuntime, *notices) {
	t.Helper()
	var srt *sleepyRuntime
	nt := &notices{}
	f := newFixture(t, func(o *Options) {
		srt = &sleepyRuntime{fakeRuntime: o.Runtime.(*fakeRuntime), samples: map[string]runtime.Sample{}}
		o.Runtime = srt
		o.Lifecycle = life
		o.Notifiers = []Notifier{nt}
		o.Audit = o.Store.AddAudit
	})
	return f, srt, nt
}

func (f *fixture) status(key string) env.Status {
	f.t.Helper()
	return f.record(key).Status
}

// TestActSleepAndWake: idle past sleepAfter, the preview sleeps (no
// process, database and work dir kept, an automatic action audited); a
// wake starts it again without building or migrating anew.
func TestActSleepAndWake(t *testing.T) {
	f, rt, _ := newLifecycleFixture(t, env.Lifecycle{SleepAfter: 30 * time.Minute})
	f.want(branch("a", shaA))
	res := f.mustReconcile("a")
	if f.status("a") != env.StatusReady {
		t.Fatalf("status %s", f.status("a"))
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > 30*time.Minute {
		t.Errorf("a ready preview looks again at %s, want by its sleep deadline", res.RequeueAfter)
	}
	f.rec.Touch("a")
	f.clock.add(20 * time.Minute)
	f.rec.Touch("a") // a request 20 minutes later keeps it awake
	f.clock.add(20 * time.Minute)
	f.mustReconcile("a")
	if f.status("a") != env.StatusReady {
		t.Fatalf("asleep although it had a request 20 minutes ago: %s", f.status("a"))
	}
	f.clock.add(11 * time.Minute)
	f.mustReconcile("a")
	r := f.record("a")
	if r.Status != env.StatusSleeping || !strings.Contains(r.Message, "without activity") {
		t.Fatalf("after 31 idle minutes: %s %q", r.Status, r.Message)
	}
	if running, _, _ := rt.Running(f.ctx, "a"); running {
		t.Error("a sleeping preview still runs")
	}
	if !f.db.exists["a"] || len(env.Find(f.items("a"), env.ItemWorkDir)) == 0 || len(env.Find(f.items("a"), env.ItemProcess)) != 0 {
		t.Errorf("sleep must keep the database and work dir and drop the process: db %v, items %v", f.db.exists["a"], f.items("a"))
	}
	audit, err := f.st.Audit(f.ctx, 10, 0)
	if err != nil || len(audit) == 0 || audit[0].Action != "sleep" || audit[0].Actor != "previewd" {
		t.Errorf("the automatic sleep is not in the audit trail: %+v %v", audit, err)
	}
	// Asleep, it stays asleep on resyncs.
	f.mustReconcile("a")
	if f.status("a") != env.StatusSleeping {
		t.Fatalf("woke up on its own: %s", f.status("a"))
	}
	prepared := rt.prepared
	f.rec.Wake("a")
	f.mustReconcile("a")
	r = f.record("a")
	if r.Status != env.StatusReady || !strings.Contains(r.Message, "woke") {
		t.Fatalf("after wake: %s %q", r.Status, r.Message)
	}
	if running, sha, _ := rt.Running(f.ctx, "a"); !running || sha != shaA {
		t.Errorf("woken preview runs %v at %s", running, sha)
	}
	if rt.prepared != prepared+1 {
		t.Errorf("wake prepared %d times", rt.prepared-prepared)
	}
	for _, ev := range f.events("a")[:3] {
		if ev.Reason == ReasonMigrating || ev.Reason == ReasonBuilding {
			t.Errorf("wake built or migrated again: %+v", ev)
		}
	}
}

// TestActReadyIsActivity: a build longer than sleepAfter does not put the
// preview to sleep the moment it is ready: sleepAfter counts from ready.
func TestActReadyIsActivity(t *testing.T) {
	f, rt, _ := newLifecycleFixture(t, env.Lifecycle{SleepAfter: 30 * time.Minute})
	rt.onPrepare = func() { f.clock.add(40 * time.Minute) }
	f.want(branch("a", shaA))
	f.mustReconcile("a")
	rt.onPrepare = nil
	f.mustReconcile("a")
	if r := f.record("a"); r.Status != env.StatusReady {
		t.Fatalf("after a 40-minute build: %s %q, want ready", r.Status, r.Message)
	}
	f.clock.add(31 * time.Minute)
	f.mustReconcile("a")
	if s := f.status("a"); s != env.StatusSleeping {
		t.Errorf("31 idle minutes after ready: %s, want sleeping", s)
	}
}

// TestActSleepFailureIsRetried: a sleep that fails keeps the preview
// ready, says so, and is retried.
func TestActSleepFailureIsRetried(t *testing.T) {
	f, rt, _ := newLifecycleFixture(t, env.Lifecycle{SleepAfter: time.Minute})
	f.want(branch("a", shaA))
	f.mustReconcile("a")
	f.clock.add(2 * time.Minute)
	rt.sleepErr = errTest("pid 42 would not stop")
	if _, err := f.reconcile("a"); err == nil || IsTerminal(err) {
		t.Fatalf("a failed sleep returned %v, want an error to retry", err)
	}
	if r := f.record("a"); r.Status != env.StatusReady || !strings.Contains(r.Message, "pid 42") {
		t.Errorf("after a failed sleep: %s %q", r.Status, r.Message)
	}
	rt.sleepErr = nil
	f.mustReconcile("a")
	if f.status("a") != env.StatusSleeping {
		t.Errorf("retry did not sleep: %s", f.status("a"))
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// TestActQueueOrderSurvivesRestart: beyond maxRunning, previews queue
// first come first served with their place; the order is the store's, so
// a new reconciler (a restart) keeps it; a freed slot starts the first.
func TestActQueueOrderSurvivesRestart(t *testing.T) {
	life := env.Lifecycle{MaxRunning: 1}
	f, _, nt := newLifecycleFixture(t, life)
	prod := env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: shaA}
	f.want(prod, branch("a", shaA), branch("b", shaA), branch("c", shaA))
	f.mustReconcile(env.ProductionKey)
	f.mustReconcile("a")
	f.mustReconcile("b")
	f.clock.add(time.Second)
	f.mustReconcile("c")
	if f.status(env.ProductionKey) != env.StatusReady || f.status("a") != env.StatusReady {
		t.Fatalf("production %s, a %s: production never counts", f.status(env.ProductionKey), f.status("a"))
	}
	f.mustReconcile("b") // its place is said again on its next look
	if r := f.record("b"); r.Status != env.StatusQueued || r.Message != "queued: 1st of 2 (maxRunning 1)" {
		t.Fatalf("b: %s %q", r.Status, r.Message)
	}
	if r := f.record("c"); r.Status != env.StatusQueued || r.Message != "queued: 2nd of 2 (maxRunning 1)" {
		t.Fatalf("c: %s %q", r.Status, r.Message)
	}
	if n := nt.last("c"); n.Env.Status != env.StatusQueued || !strings.Contains(n.Env.Message, "2nd of 2") {
		t.Errorf("the PR is not told its place: %+v", n.Env)
	}

	// A restart: a new reconciler on the same store; c is looked at
	// first but b is still first.
	g := &fixture{t: t, ctx: f.ctx, st: f.st, rt: f.rt, db: f.db, src: f.src, clock: f.clock}
	g.rec = New(Options{Store: f.st, Source: f.src, Database: f.db, Runtime: f.rec.o.Runtime, MaxRestarts: 2, Now: f.clock.Now, Lifecycle: life,
		URL: func(k string) string { return "http://" + k + ".preview.test" }})
	g.want(prod, branch("b", shaA), branch("c", shaA)) // a's PR closed
	g.mustReconcile("c")
	if r := g.record("c"); r.Status != env.StatusQueued {
		t.Fatalf("c jumped the queue after a restart: %s %q", r.Status, r.Message)
	}
	g.mustReconcile("a") // removed: its slot frees and b is enqueued
	if n := g.rec.queue.Len(); n == 0 {
		t.Fatal("a freed slot enqueued nothing")
	}
	g.mustReconcile("c")
	if g.status("c") != env.StatusQueued {
		t.Fatalf("c took the slot before b: %s", g.status("c"))
	}
	g.mustReconcile("b")
	if g.status("b") != env.StatusReady {
		t.Fatalf("b did not start when the slot freed: %s %q", g.status("b"), g.record("b").Message)
	}
	g.mustReconcile("c")
	if r := g.record("c"); r.Status != env.StatusQueued || r.Message != "queued: 1st of 1 (maxRunning 1)" {
		t.Errorf("c: %s %q", r.Status, r.Message)
	}
}

// TestActEvictIdle: with evict idle, a new preview puts the least
// recently active running one to sleep and takes its slot.
func TestActEvictIdle(t *testing.T) {
	f, _, _ := newLifecycleFixture(t, env.Lifecycle{MaxRunning: 2, Evict: env.EvictIdle})
	f.want(branch("a", shaA), branch("b", shaA), branch("c", shaA))
	f.mustReconcile("a")
	f.mustReconcile("b")
	f.clock.add(time.Minute)
	f.rec.Touch("a") // b is now the least recently used
	f.mustReconcile("a")
	f.mustReconcile("c")
	if f.status("c") != env.StatusQueued {
		t.Fatalf("c: %s", f.status("c"))
	}
	f.mustReconcile("b")
	if r := f.record("b"); r.Status != env.StatusSleeping || !strings.Contains(r.Message, "make room for c") {
		t.Fatalf("b was not evicted: %s %q", r.Status, r.Message)
	}
	f.mustReconcile("c")
	if f.status("c") != env.StatusReady || f.status("a") != env.StatusReady {
		t.Fatalf("c %s, a %s", f.status("c"), f.status("a"))
	}
}

// TestActExpiry: the TTL warns warnBefore ahead (once), removes the
// preview as a close would, keeps it down at that commit, and a new
// commit brings it back.
func TestActExpiry(t *testing.T) {
	f, _, nt := newLifecycleFixture(t, env.Lifecycle{TTL: 72 * time.Hour, WarnBefore: 12 * time.Hour})
	f.want(branch("a", shaA))
	f.mustReconcile("a")
	if r := f.record("a"); r.ExpiresAt == nil {
		t.Fatal("no expiry recorded")
	}
	f.clock.add(61 * time.Hour)
	f.mustReconcile("a")
	n := nt.last("a")
	if n.Warning == nil || n.Reason != ReasonExpiryWarning {
		t.Fatalf("no warning at 61 h: %+v", n)
	}
	count := len(nt.got)
	f.mustReconcile("a")
	if len(nt.got) != count {
		t.Errorf("warned twice for one expiry")
	}
	f.clock.add(12 * time.Hour)
	f.mustReconcile("a")
	r := f.record("a")
	if r.DeletedAt == nil || f.db.exists["a"] || len(f.items("a")) != 0 {
		t.Fatalf("not removed at 73 h: deleted %v, db %v, items %v", r.DeletedAt, f.db.exists["a"], f.items("a"))
	}
	if n := nt.last("a"); !n.Expired {
		t.Errorf("the removal notice does not say it expired: %+v", n)
	}
	mark, down, err := f.st.DownMarkOf(f.ctx, "a")
	if err != nil || !down || mark.Reason != store.DownExpired || mark.SHA != shaA {
		t.Fatalf("expired mark %+v %v %v", mark, down, err)
	}
	// The forge still lists the commit: it stays removed.
	f.mustReconcile("a")
	if r := f.record("a"); r.DeletedAt == nil {
		t.Fatal("came back without a new commit")
	}
	// A push brings it back.
	f.want(branch("a", shaB))
	f.mustReconcile("a")
	if r := f.record("a"); r.DeletedAt != nil || r.Status != env.StatusReady || r.SHA != shaB {
		t.Fatalf("not revived by a push: %+v", r.Environment)
	}
	if _, down, _ := f.st.DownMarkOf(f.ctx, "a"); down {
		t.Error("the expired mark outlived the revival")
	}
}

// TestActKeepAndExtend: kept, a preview neither sleeps nor expires;
// extended, it expires later; production is refused and exempt.
func TestActKeepAndExtend(t *testing.T) {
	f, _, _ := newLifecycleFixture(t, env.Lifecycle{SleepAfter: time.Hour, TTL: 24 * time.Hour})
	prod := env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: shaA}
	f.want(prod, branch("a", shaA), branch("b", shaA))
	for _, k := range []string{env.ProductionKey, "a", "b"} {
		f.mustReconcile(k)
	}
	if err := f.rec.Keep(f.ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	exp, err := f.rec.Extend(f.ctx, "b", 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d < 71*time.Hour || d > 73*time.Hour {
		t.Errorf("extend 72h expires in %s", d)
	}
	if _, err := f.rec.Extend(f.ctx, "b", 90*24*time.Hour); err == nil {
		t.Error("extend by 90 days accepted")
	}
	for _, fn := range []func() error{
		func() error { return f.rec.Keep(f.ctx, env.ProductionKey, true) },
		func() error { _, err := f.rec.Extend(f.ctx, env.ProductionKey, time.Hour); return err },
		func() error { return f.rec.Sleep(f.ctx, env.ProductionKey, "token:ci") },
	} {
		if err := fn(); !errors.Is(err, ErrProduction) {
			t.Errorf("a lifecycle action on production: %v, want ErrProduction", err)
		}
	}
	if err := f.rec.Sleep(f.ctx, "nope", "token:ci"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("sleep of an unknown key: %v", err)
	}
	f.clock.add(30 * time.Hour)
	for _, k := range []string{env.ProductionKey, "a", "b"} {
		f.mustReconcile(k)
	}
	if f.status("a") != env.StatusReady || f.status(env.ProductionKey) != env.StatusReady {
		t.Errorf("kept a %s, production %s after 30 idle hours", f.status("a"), f.status(env.ProductionKey))
	}
	if r := f.record("b"); r.DeletedAt != nil || r.Status != env.StatusSleeping {
		t.Errorf("extended b after 30 h: %s deleted %v", r.Status, r.DeletedAt)
	}
	f.clock.add(43 * time.Hour)
	f.mustReconcile("b")
	if r := f.record("b"); r.DeletedAt == nil {
		t.Errorf("b not removed past its extension")
	}
	if err := f.rec.Keep(f.ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	f.mustReconcile("a")
	if r := f.record("a"); r.DeletedAt != nil {
		t.Fatal("unkeep is activity, yet a was removed at once")
	}
	f.clock.add(25 * time.Hour)
	f.mustReconcile("a")
	if r := f.record("a"); r.DeletedAt == nil {
		t.Errorf("unkept a, idle 73 h, not removed: %s", r.Status)
	}
}

// TestMeter: usage accumulates from the runtime's samples: running time,
// CPU time of one instance, memory over time and its peak; a new instance
// counts from zero.
func TestMeter(t *testing.T) {
	f, rt, _ := newLifecycleFixture(t, env.Lifecycle{})
	f.rec.o.MeterInterval = time.Minute
	f.want(branch("a", shaA))
	f.mustReconcile("a")
	rt.samples["a"] = runtime.Sample{Instance: "1:1", CPUSeconds: 10, MemoryBytes: 100e6}
	f.rec.meter(f.ctx) // first sight: the baseline
	f.clock.add(30 * time.Second)
	rt.samples["a"] = runtime.Sample{Instance: "1:1", CPUSeconds: 13, MemoryBytes: 300e6}
	f.rec.meter(f.ctx)
	f.clock.add(30 * time.Second)
	rt.samples["a"] = runtime.Sample{Instance: "2:5", CPUSeconds: 2, MemoryBytes: 200e6} // restarted
	f.rec.meter(f.ctx)
	u := f.record("a").Usage
	if u == nil {
		t.Fatal("no usage")
	}
	near := func(a, b float64) bool { return a-b < 0.5 && b-a < 0.5 }
	if !near(u.RunSeconds, 60) || !near(u.CPUSeconds, 5) || u.PeakMemoryBytes != 300e6 || !near(u.GBSeconds, 0.3*30+0.2*30) {
		t.Errorf("usage %+v", *u)
	}
	p := u.Priced(env.Rates{CPUHour: 36, GBHour: 3.6})
	if !near(p.Cost*100, (5.0/3600*36+15.0/3600*3.6)*100) || p.Currency != "USD" {
		t.Errorf("priced %+v", p)
	}
}

// TestActWakeFailure: a wake whose start fails marks only that preview
// failed, with the log tail; the others are untouched.
func TestActWakeFailure(t *testing.T) {
	f, rt, _ := newLifecycleFixture(t, env.Lifecycle{SleepAfter: time.Minute})
	f.want(branch("a", shaA), branch("b", shaA))
	f.mustReconcile("a")
	f.mustReconcile("b")
	f.clock.add(2 * time.Minute)
	f.mustReconcile("a")
	if f.status("a") != env.StatusSleeping {
		t.Fatalf("a: %s", f.status("a"))
	}
	f.rec.Touch("b")
	rt.deployErr = &env.StepError{Step: "start", Err: errTest("exit status 1"), Tail: "panic: no config"}
	f.rec.Wake("a")
	if _, err := f.reconcile("a"); err == nil || !IsTerminal(err) {
		t.Fatalf("a failed wake returned %v, want a terminal error", err)
	}
	r := f.record("a")
	if r.Status != env.StatusFailed || !strings.Contains(r.Message, "panic: no config") {
		t.Errorf("after a failed wake: %s %q", r.Status, r.Message)
	}
	if f.status("b") != env.StatusReady {
		t.Errorf("b: %s", f.status("b"))
	}
}
