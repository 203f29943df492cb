package reconcile

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
)

// collectingRuntime is a fakeRuntime that also owns objects by key (as
// namespaces are) and collects them as runtime/kube does: list first,
// then ask what is live.
type collectingRuntime struct {
	*fakeRuntime
	mu      sync.Mutex
	objects map[string]bool
}

var _ runtime.Collector = (*collectingRuntime)(nil)

func (c *collectingRuntime) Collect(ctx context.Context, live func(context.Context) (map[string]bool, error)) ([]string, error) {
	c.mu.Lock()
	var have []string
	for k := range c.objects {
		have = append(have, k)
	}
	c.mu.Unlock()
	keys, err := live(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range have {
		if !keys[k] {
			delete(c.objects, k)
			removed = append(removed, k)
		}
	}
	return removed, nil
}

func (c *collectingRuntime) has(k string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.objects[k]
}

func (c *collectingRuntime) add(k string) {
	c.mu.Lock()
	c.objects[k] = true
	c.mu.Unlock()
}

// collectingDatabase is a fakeDatabase that collects its databases.
type collectingDatabase struct{ *fakeDatabase }

var _ database.Collector = collectingDatabase{}

func (d collectingDatabase) Collect(ctx context.Context, live map[string]bool) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var removed []string
	for k := range d.exists {
		if !live[k] {
			delete(d.exists, k)
			removed = append(removed, k)
		}
	}
	return removed, nil
}

func (d collectingDatabase) has(k string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exists[k]
}

func newCollectFixture(t *testing.T, mod ...func(*Options)) (*fixture, *collectingRuntime, collectingDatabase) {
	f := newFixture(t)
	crt := &collectingRuntime{fakeRuntime: f.rt, objects: map[string]bool{}}
	cdb := collectingDatabase{f.db}
	o := f.rec.o
	o.Runtime, o.Database = crt, cdb
	for _, m := range mod {
		m(&o)
	}
	f.rec = New(o)
	return f, crt, cdb
}

// TestCollect: what belongs to no live environment, no inventory, no
// change the forge lists now and not to production is collected, by the
// runtime and the database provider; nothing is when the forge cannot be
// asked.
func TestCollect(t *testing.T) {
	f, crt, cdb := newCollectFixture(t)
	f.want(branch("live", shaA))
	f.mustReconcile("live")
	if err := f.st.PutItem(f.ctx, "leftover", env.Item{Kind: env.ItemSQLite, Name: "/db/leftover.db"}); err != nil {
		t.Fatal(err)
	}
	all := []string{"live", "leftover", "open", env.ProductionKey, "orphan"}
	for _, k := range all {
		crt.add(k)
		cdb.exists[k] = true
	}
	// "open" is listed by the forge but not yet in the store (a fresh
	// store): it must survive.
	f.src.set(branch("live", shaA), branch("open", shaA))

	f.src.fail(errors.New("forge unreachable"))
	f.rec.Collect(f.ctx)
	for _, k := range all {
		if !crt.has(k) || !cdb.has(k) {
			t.Errorf("%s collected while the forge could not be asked", k)
		}
	}

	f.src.set(branch("live", shaA), branch("open", shaA))
	f.rec.Collect(f.ctx)
	for _, k := range all {
		want := k != "orphan"
		if crt.has(k) != want || cdb.has(k) != want {
			t.Errorf("%s: runtime %v database %v, want %v", k, crt.has(k), cdb.has(k), want)
		}
	}
}

// TestRunCollectsPeriodically: Run collects after its first listing and
// again every CollectInterval, not only once.
func TestRunCollectsPeriodically(t *testing.T) {
	f, crt, cdb := newCollectFixture(t, func(o *Options) {
		o.Now = time.Now
		o.PollInterval = 10 * time.Millisecond
		o.CollectInterval = 50 * time.Millisecond
	})
	f.src.set(branch("open", shaA))
	crt.add("orphan-1")
	cdb.mu.Lock()
	cdb.exists["orphan-1"] = true
	cdb.mu.Unlock()
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.rec.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return !crt.has("orphan-1") && !cdb.has("orphan-1") })
	// Something orphaned later goes at a later collection.
	crt.add("orphan-2")
	waitFor(t, func() bool { return !crt.has("orphan-2") })
	// The listed change was deployed meanwhile and never collected.
	waitFor(t, func() bool { r, err := f.st.Get(f.ctx, "open"); return err == nil && r.Status == env.StatusReady })
	if !cdb.has("open") {
		t.Errorf("the open change's database was collected")
	}
}

// TestNextHonoursResult: the worker requeues a settled key after the
// resync period, retries an error with backoff, and does not retry a
// terminal error.
func TestNextHonoursResult(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.ResyncPeriod = 20 * time.Millisecond })
	f.want(branch("ok", shaA), branch("broken", shaA), branch("flaky", shaA))
	for f.rec.queue.Len() > 0 {
		key, _ := f.rec.queue.Get()
		f.rec.queue.Done(key)
		f.rec.queue.Forget(key)
	}
	ctx := f.ctx
	f.rec.queue.Add("ok")
	f.rec.next(ctx)
	waitFor(t, func() bool { return f.rec.queue.Len() == 1 })
	if key, _ := f.rec.queue.Get(); key != "ok" {
		t.Fatalf("requeued %q", key)
	} else {
		f.rec.queue.Done(key)
	}

	f.rt.prepareErr = &env.StepError{Step: "build", Err: errors.New("exit status 1")}
	f.rec.queue.Add("broken")
	f.rec.next(ctx)
	if r := f.record("broken"); r.Status != env.StatusFailed {
		t.Fatalf("broken = %s", r.Status)
	}
	if n := f.rec.queue.NumRequeues("broken"); n != 0 {
		t.Errorf("terminal error retried %d times", n)
	}

	f.rt.prepareErr = nil
	f.db.ensureErr = errors.New("connection refused")
	f.rec.queue.Add("flaky")
	f.rec.next(ctx)
	if n := f.rec.queue.NumRequeues("flaky"); n != 1 {
		t.Errorf("error retried %d times, want 1 (with backoff)", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
