package reconcile

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// fakeRuntime is a runtime.Runtime of our own that records what it makes
// in the inventory, as real runtimes do, and fails on request.
type fakeRuntime struct {
	inv inventory.Recorder

	mu          sync.Mutex
	running     map[string]string // key -> running SHA
	prepareErr  error
	migrateErr  error
	rehearseErr error // Migrate of a rehearsal release (Release.Rehearsal)
	deployErr   error
	deleteFails int // how many Deletes fail before one works
	prepared    int
	onPrepare   func()   // called by Prepare (a test's clock moving during a build)
	warnings    []string // Deploy sets them on the release
}

var (
	_ runtime.Runtime = (*fakeRuntime)(nil)
	_ runtime.Logs    = (*fakeRuntime)(nil)
)

func (f *fakeRuntime) Prepare(ctx context.Context, rel *env.Release) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prepared++
	if f.onPrepare != nil {
		f.onPrepare()
	}
	if f.prepareErr != nil {
		return f.prepareErr
	}
	return f.inv.PutItem(ctx, rel.Key, env.Item{Kind: env.ItemWorkDir, Name: "/envs/" + rel.Key + "/src-" + rel.SHA})
}

func (f *fakeRuntime) Migrate(ctx context.Context, rel *env.Release) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rel.Vars["DATABASE_URL"] == "" {
		return errors.New("migrate without the database's variables")
	}
	if rel.Rehearsal && f.rehearseErr != nil {
		return f.rehearseErr
	}
	return f.migrateErr
}

func (f *fakeRuntime) Deploy(ctx context.Context, rel *env.Release) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deployErr != nil {
		return f.deployErr
	}
	if err := f.inv.PutItem(ctx, rel.Key, env.Item{Kind: env.ItemProcess, Name: rel.Key + "@" + rel.SHA}); err != nil {
		return err
	}
	f.running[rel.Key] = rel.SHA
	rel.Warnings = append(rel.Warnings, f.warnings...)
	return nil
}

func (f *fakeRuntime) Running(ctx context.Context, key string) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sha, ok := f.running[key]
	return ok, sha, nil
}

// exit is the process of key exiting on its own.
func (f *fakeRuntime) exit(key string) {
	f.mu.Lock()
	delete(f.running, key)
	f.mu.Unlock()
}

func (f *fakeRuntime) Delete(ctx context.Context, key string, items []env.Item) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleteFails > 0 {
		f.deleteFails--
		return errors.New("process would not stop")
	}
	delete(f.running, key)
	for _, it := range items {
		if it.Kind == env.ItemProcess || it.Kind == env.ItemWorkDir {
			if err := f.inv.DeleteItem(ctx, key, it); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeRuntime) Logs(ctx context.Context, key string, n int) (string, error) {
	return "==> run\npanic: boom", nil
}

// fakeDatabase is a database.Provider of our own.
type fakeDatabase struct {
	mu        sync.Mutex
	ensureErr error
	dropErr   error
	exists    map[string]bool
}

var _ database.Provider = (*fakeDatabase)(nil)

func (d *fakeDatabase) Items(t database.Target) []env.Item {
	return []env.Item{{Kind: env.ItemSQLite, Name: "/db/" + t.Key + ".db"}}
}

func (d *fakeDatabase) Ensure(ctx context.Context, t database.Target) (database.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ensureErr != nil {
		return database.Conn{}, d.ensureErr
	}
	d.exists[t.Key] = true
	return database.Conn{Vars: map[string]string{"DATABASE_URL": "sqlite:/db/" + t.Key + ".db"}, Name: t.Key + ".db"}, nil
}

func (d *fakeDatabase) Drop(ctx context.Context, items []env.Item) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dropErr != nil {
		return d.dropErr
	}
	for _, it := range items {
		delete(d.exists, strings.TrimSuffix(filepath.Base(it.Name), ".db"))
	}
	return nil
}

// listing is a Source whose listing the test sets.
type listing struct {
	mu   sync.Mutex
	srcs []env.Source
	err  error
}

func (l *listing) set(srcs ...env.Source) {
	l.mu.Lock()
	l.srcs, l.err = srcs, nil
	l.mu.Unlock()
}

func (l *listing) fail(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

func (l *listing) List(ctx context.Context) ([]env.Source, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]env.Source(nil), l.srcs...), l.err
}

// clock is the real clock moved on by the test; the store's clock is the
// real one, and the two must not go apart backwards.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	ctx   context.Context
	st    *store.Store
	rt    *fakeRuntime
	db    *fakeDatabase
	src   *listing
	clock *clock
	rec   *Reconciler
}

func newFixture(t *testing.T, mod ...func(*Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "previewd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, ctx: ctx, st: st, src: &listing{}, clock: &clock{},
		rt: &fakeRuntime{inv: st, running: map[string]string{}}, db: &fakeDatabase{exists: map[string]bool{}}}
	o := Options{Store: st, Source: f.src, Database: f.db, Runtime: f.rt, MaxRestarts: 2, Now: f.clock.Now,
		URL: func(k string) string { return "http://" + k + ".preview.test" }}
	for _, m := range mod {
		m(&o)
	}
	f.rec = New(o)
	return f
}

// want sets the forge's listing and lists it.
func (f *fixture) want(srcs ...env.Source) {
	f.t.Helper()
	f.src.set(srcs...)
	if err := f.rec.Sync(f.ctx); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) reconcile(key string) (Result, error) {
	f.t.Helper()
	return f.rec.Reconcile(f.ctx, key)
}

func (f *fixture) mustReconcile(key string) Result {
	f.t.Helper()
	res, err := f.reconcile(key)
	if err != nil {
		f.t.Fatalf("Reconcile(%s): %v", key, err)
	}
	return res
}

func (f *fixture) record(key string) store.Record {
	f.t.Helper()
	r, err := f.st.GetRecord(f.ctx, key)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) items(key string) []env.Item {
	f.t.Helper()
	items, err := f.st.Items(f.ctx, key)
	if err != nil {
		f.t.Fatal(err)
	}
	return items
}

func (f *fixture) events(key string) []env.Event {
	f.t.Helper()
	evs, err := f.st.Events(f.ctx, key, 100)
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

func branch(key, sha string) env.Source {
	return env.Source{Key: key, Kind: env.KindBranch, Branch: key, SHA: sha}
}

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestActDeploy(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.ResyncPeriod = time.Minute })
	f.want(branch("feat", shaA))
	res := f.mustReconcile("feat")
	r := f.record("feat")
	if r.Status != env.StatusReady || r.SHA != shaA || r.URL != "http://feat.preview.test" || r.Database != "feat.db" || r.ReadyAt == nil {
		t.Fatalf("record = %+v", r)
	}
	if r.Deployed == nil || r.Deployed.SHA != shaA || r.FailedSHA != "" {
		t.Errorf("deployed = %+v, failed %q", r.Deployed, r.FailedSHA)
	}
	for _, id := range []inventory.ID{{Kind: env.ItemSQLite, Name: "/db/feat.db"}, {Kind: env.ItemProcess, Name: "feat@" + shaA}, {Kind: env.ItemWorkDir, Name: "/envs/feat/src-" + shaA}} {
		if !inventory.Has(f.items("feat"), id) {
			t.Errorf("inventory lacks %s: %v", id, f.items("feat"))
		}
	}
	var reasons []string
	for _, ev := range f.events("feat") {
		reasons = append([]string{ev.Reason}, reasons...)
	}
	if got := strings.Join(reasons, ","); got != "Building,Migrating,Starting,Ready" {
		t.Errorf("events = %s", got)
	}
	// A settled environment is looked at again after the resync period,
	// with up to a tenth of jitter.
	if res.RequeueAfter < time.Minute || res.RequeueAfter > time.Minute+6*time.Second {
		t.Errorf("RequeueAfter = %s, want 1m..1m6s", res.RequeueAfter)
	}
	// Nothing changes on the next look, and nothing is recorded.
	n := len(f.events("feat"))
	f.mustReconcile("feat")
	if len(f.events("feat")) != n || f.rt.prepared != 1 {
		t.Errorf("a settled reconcile acted: %d events, %d prepares", len(f.events("feat")), f.rt.prepared)
	}
}

// TestActDeployWarnings: what the runtime warns about a release it
// started (e.g. it listens beyond loopback) is in the ready status and its
// event.
func TestActDeployWarnings(t *testing.T) {
	f := newFixture(t)
	f.rt.warnings = []string{"warning: listens on 0.0.0.0:4312, reachable around previewd's proxy; bind to $HOST"}
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	r := f.record("feat")
	if r.Status != env.StatusReady || !strings.HasSuffix(r.Message, "\n"+f.rt.warnings[0]) {
		t.Errorf("status %s: %q, want ready with the warning", r.Status, r.Message)
	}
	if ev := f.events("feat")[0]; ev.Reason != ReasonReady || !strings.Contains(ev.Message, "listens on 0.0.0.0:4312") {
		t.Errorf("latest event %s: %q, want Ready with the warning", ev.Reason, ev.Message)
	}
}

func TestActStepFailureKeepsServingOldSHA(t *testing.T) {
	f := newFixture(t)
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")

	f.rt.migrateErr = &env.StepError{Step: "migrate", Err: errors.New("exit status 1"), Tail: "relation already exists"}
	f.want(branch("feat", shaB))
	res, err := f.reconcile("feat")
	if !IsTerminal(err) || !errors.Is(err, Terminal(nil)) || res.RequeueAfter != 0 {
		t.Fatalf("Reconcile = %+v, %v; want a terminal error", res, err)
	}
	r := f.record("feat")
	if r.Status != env.StatusFailed || r.FailedSHA != shaB || !strings.Contains(r.Message, "still serving aaaaaaa") || !strings.Contains(r.Message, "relation already exists") {
		t.Errorf("record = %s %q failed %q", r.Status, r.Message, r.FailedSHA)
	}
	if r.Deployed == nil || r.Deployed.SHA != shaA {
		t.Errorf("deployed = %+v, want the old SHA", r.Deployed)
	}
	if _, sha, _ := f.rt.Running(f.ctx, "feat"); sha != shaA {
		t.Errorf("running %s, want the old SHA", sha)
	}
	// The failed SHA is not tried again by itself.
	f.rt.migrateErr = nil
	if res := f.mustReconcile("feat"); res.RequeueAfter != 0 {
		t.Errorf("failed SHA requeued after %s", res.RequeueAfter)
	}
	if r := f.record("feat"); r.Status != env.StatusFailed || f.rt.prepared != 2 {
		t.Errorf("failed SHA tried again: %s, %d prepares", r.Status, f.rt.prepared)
	}
}

func TestActRedeploy(t *testing.T) {
	f := newFixture(t)
	f.rt.prepareErr = &env.StepError{Step: "build", Err: errors.New("exit status 2")}
	f.want(branch("feat", shaA))
	if _, err := f.reconcile("feat"); !IsTerminal(err) {
		t.Fatalf("Reconcile = %v; want a terminal error", err)
	}
	f.rt.prepareErr = nil
	f.rec.Redeploy("feat")
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady || r.FailedSHA != "" {
		t.Fatalf("after redeploy: %s %q failed %q", r.Status, r.Message, r.FailedSHA)
	}
	// The request is handled: a new failure of the SHA stays failed.
	f.rt.prepareErr = &env.StepError{Step: "build", Err: errors.New("exit status 2")}
	f.rec.Redeploy("feat")
	f.reconcile("feat") // ready and running: nothing to redeploy
	if r := f.record("feat"); r.Status != env.StatusReady {
		t.Errorf("redeploy of a ready environment changed it: %s", r.Status)
	}
	f.rec.mu.Lock()
	left := len(f.rec.requests)
	f.rec.mu.Unlock()
	if left != 0 {
		t.Errorf("%d requests left after they were handled", left)
	}
}

func TestActWaitRequeues(t *testing.T) {
	f := newFixture(t)
	f.rt.prepareErr = &env.WaitError{Reason: "waiting for image shop:aaaaaaa", After: time.Second}
	f.want(branch("feat", shaA))
	res := f.mustReconcile("feat")
	if res.RequeueAfter < time.Second || res.RequeueAfter > 1200*time.Millisecond {
		t.Errorf("RequeueAfter = %s, want 1s..1.2s", res.RequeueAfter)
	}
	r := f.record("feat")
	if r.Status != env.StatusPending || r.Message != "waiting for image shop:aaaaaaa" {
		t.Errorf("record = %s %q", r.Status, r.Message)
	}
	if evs := f.events("feat"); evs[0].Reason != ReasonWaiting {
		t.Errorf("last event = %+v", evs[0])
	}
	// Once the image is there, the rollout goes on.
	f.rt.prepareErr = nil
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady {
		t.Errorf("after the wait: %s %q", r.Status, r.Message)
	}
}

func TestActTransientErrorIsSavedAndRetried(t *testing.T) {
	f := newFixture(t)
	f.db.ensureErr = errors.New("connection refused")
	f.want(branch("feat", shaA))
	_, err := f.reconcile("feat")
	if err == nil || IsTerminal(err) {
		t.Fatalf("Reconcile = %v; want an error to retry", err)
	}
	r := f.record("feat")
	if r.Status != env.StatusFailed || !strings.Contains(r.Message, "connection refused") || r.FailedSHA != "" {
		t.Errorf("record = %s %q failed %q", r.Status, r.Message, r.FailedSHA)
	}
	if !inventory.Has(f.items("feat"), inventory.ID{Kind: env.ItemSQLite, Name: "/db/feat.db"}) {
		t.Errorf("the database was not recorded before it was made")
	}
	f.db.ensureErr = nil
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady {
		t.Errorf("after the retry: %s %q", r.Status, r.Message)
	}
}

func TestActTeardownKeepsWhatFailedToDelete(t *testing.T) {
	f := newFixture(t)
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")

	f.rt.deleteFails = 1
	f.want()
	_, err := f.reconcile("feat")
	if err == nil || IsTerminal(err) {
		t.Fatalf("Reconcile = %v; want an error to retry", err)
	}
	r := f.record("feat")
	if r.Status != env.StatusDeleting || r.DeletedAt != nil || !strings.Contains(r.Message, "removal failed and is being retried") {
		t.Errorf("record = %s %q deleted %v", r.Status, r.Message, r.DeletedAt)
	}
	// Nothing was forgotten: the process, the work dir and the
	// database (which waits for the runtime's part) stay recorded.
	if n := len(f.items("feat")); n != 3 {
		t.Errorf("inventory after the failed delete: %v", f.items("feat"))
	}
	if !f.db.exists["feat"] {
		t.Errorf("database dropped before the runtime's part was gone")
	}
	// The retry removes it all, from the inventory alone.
	res := f.mustReconcile("feat")
	r = f.record("feat")
	if r.DeletedAt == nil || !strings.HasPrefix(r.Message, "removed ") || len(f.items("feat")) != 0 || f.db.exists["feat"] {
		t.Errorf("after the retry: %s %q deleted %v items %v db %v", r.Status, r.Message, r.DeletedAt, f.items("feat"), f.db.exists)
	}
	if res.RequeueAfter != 0 {
		t.Errorf("a removed environment requeued after %s", res.RequeueAfter)
	}
	if evs := f.events("feat"); evs[0].Reason != ReasonRemoved || evs[1].Reason != ReasonRetrying {
		t.Errorf("events = %+v", evs[:2])
	}
	// Nothing left: nothing to do.
	f.mustReconcile("feat")
	if evs := f.events("feat"); evs[0].Reason != ReasonRemoved {
		t.Errorf("a removed environment acted again: %+v", evs[0])
	}
}

func TestActTeardownOfLeftoversWithoutRecord(t *testing.T) {
	f := newFixture(t)
	// A crash between recording and upserting left only inventory.
	if err := f.st.PutItem(f.ctx, "ghost", env.Item{Kind: env.ItemSQLite, Name: "/db/ghost.db"}); err != nil {
		t.Fatal(err)
	}
	f.db.exists["ghost"] = true
	f.want()
	f.mustReconcile("ghost")
	if len(f.items("ghost")) != 0 || f.db.exists["ghost"] {
		t.Errorf("leftovers stay: %v %v", f.items("ghost"), f.db.exists)
	}
	if _, err := f.st.Get(f.ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("teardown made a record: %v", err)
	}
}

func TestActRestartsThenGivesUp(t *testing.T) {
	f := newFixture(t) // MaxRestarts 2
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")

	for i := 1; i <= 2; i++ {
		f.rt.exit("feat")
		f.rec.Exited("feat")
		// Right after the exit: wait for the backoff.
		res := f.mustReconcile("feat")
		if want := RestartBackoff(i - 1); res.RequeueAfter <= 0 || res.RequeueAfter > want {
			t.Fatalf("crash %d: RequeueAfter = %s, want at most %s", i, res.RequeueAfter, want)
		}
		if running, _, _ := f.rt.Running(f.ctx, "feat"); running {
			t.Fatalf("crash %d: restarted before the backoff", i)
		}
		f.clock.add(time.Second)
		f.mustReconcile("feat")
		r := f.record("feat")
		if running, _, _ := f.rt.Running(f.ctx, "feat"); !running || r.Status != env.StatusReady || r.Restarts != i || !strings.Contains(r.Message, "restarted") {
			t.Fatalf("crash %d: running %v, %s %q restarts %d", i, running, r.Status, r.Message, r.Restarts)
		}
		f.clock.add(time.Second)
	}
	f.rt.exit("feat")
	f.rec.Exited("feat")
	res, err := f.reconcile("feat")
	if err != nil || res.RequeueAfter != 0 {
		t.Fatalf("Reconcile = %+v, %v", res, err)
	}
	r := f.record("feat")
	if r.Status != env.StatusFailed || r.FailedSHA != shaA || !strings.Contains(r.Message, "gave up after 2 restarts") || !strings.Contains(r.Message, "panic: boom") {
		t.Errorf("record = %s %q failed %q", r.Status, r.Message, r.FailedSHA)
	}
	// Given up: it stays failed until a new commit or a redeploy.
	f.mustReconcile("feat")
	if running, _, _ := f.rt.Running(f.ctx, "feat"); running {
		t.Errorf("restarted after giving up")
	}
	f.rec.Redeploy("feat")
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady || r.Restarts != 0 {
		t.Errorf("after redeploy: %s restarts %d", r.Status, r.Restarts)
	}
}

func TestActFailedRestartCounts(t *testing.T) {
	f := newFixture(t) // MaxRestarts 2
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")

	f.rt.deployErr = errors.New("port in use")
	f.rt.exit("feat")
	f.clock.add(time.Second)
	res := f.mustReconcile("feat")
	r := f.record("feat")
	if r.Status != env.StatusReady || r.Restarts != 1 || !strings.Contains(r.Message, "restart 1 of 2 failed: port in use") {
		t.Fatalf("record = %s %q restarts %d", r.Status, r.Message, r.Restarts)
	}
	if res.RequeueAfter != RestartBackoff(1) {
		t.Errorf("RequeueAfter = %s, want %s", res.RequeueAfter, RestartBackoff(1))
	}
	f.clock.add(time.Second)
	f.mustReconcile("feat") // restart 2 fails too
	f.clock.add(time.Second)
	f.mustReconcile("feat") // used up: give up
	if r := f.record("feat"); r.Status != env.StatusFailed || !strings.Contains(r.Message, "gave up after 2 restarts") {
		t.Errorf("record = %s %q restarts %d", r.Status, r.Message, r.Restarts)
	}
}

// TestActForgeSilentRestartsDeployed: before the forge has answered (a
// reboot while it is away), a deployed environment whose process is gone
// is restarted at the SHA it was deployed at, and nothing else is done.
func TestActForgeSilentRestartsDeployed(t *testing.T) {
	f := newFixture(t)
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")

	// previewd restarts: a new reconciler, its process gone, the forge
	// away.
	rt := &fakeRuntime{inv: f.st, running: map[string]string{}}
	f.src.fail(errors.New("no route to host"))
	rec := New(Options{Store: f.st, Source: f.src, Database: f.db, Runtime: rt, MaxRestarts: 2, Now: f.clock.Now})
	if err := rec.Sync(f.ctx); err == nil {
		t.Fatal("Sync worked with the forge away")
	}
	f.clock.add(time.Second)
	if _, err := rec.Reconcile(f.ctx, "feat"); err != nil {
		t.Fatal(err)
	}
	if _, sha, _ := rt.Running(f.ctx, "feat"); sha != shaA {
		t.Errorf("running %q, want the deployed SHA", sha)
	}
	// And an environment the forge has not confirmed is not torn down.
	if r := f.record("feat"); r.DeletedAt != nil || r.Status != env.StatusReady {
		t.Errorf("record = %s deleted %v", r.Status, r.DeletedAt)
	}
}

func TestActRefusesProductionTeardown(t *testing.T) {
	f := newFixture(t)
	_, err := f.rec.act(f.ctx, Observed{Key: env.ProductionKey, Listed: true}, Plan{Action: Teardown, Source: env.Source{Key: env.ProductionKey}})
	if !IsTerminal(err) {
		t.Errorf("act = %v; want a terminal refusal", err)
	}
}

// TestActDownUp: a key put down is removed as a close would remove it,
// is not deployed again by listings or pushes, holds across a restart
// (a new Reconciler on the same store), and up deploys it again.
func TestActDownUp(t *testing.T) {
	f := newFixture(t)
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	if err := f.rec.Down(f.ctx, "feat", "token:ci"); err != nil {
		t.Fatal(err)
	}
	f.mustReconcile("feat")
	r := f.record("feat")
	if r.DeletedAt == nil || r.Status != env.StatusDeleting || len(f.items("feat")) != 0 || f.db.exists["feat"] {
		t.Fatalf("after down: status %s deleted %v items %v", r.Status, r.DeletedAt, f.items("feat"))
	}
	if running, _, _ := f.rt.Running(f.ctx, "feat"); running {
		t.Fatal("still running after down")
	}
	// A push (a new SHA, an event) and a listing do not bring it back.
	f.want(branch("feat", shaB))
	f.rec.Enqueue("feat")
	if res := f.mustReconcile("feat"); res.RequeueAfter != 0 {
		t.Errorf("down key requeued after %s", res.RequeueAfter)
	}
	if r := f.record("feat"); r.DeletedAt == nil || len(f.items("feat")) != 0 {
		t.Fatalf("redeployed while down: %s %v", r.Status, r.DeletedAt)
	}
	// A restart: a new Reconciler on the same store still sees it down.
	again := New(Options{Store: f.st, Source: f.src, Database: f.db, Runtime: f.rt, MaxRestarts: 2, Now: f.clock.Now})
	if err := again.Sync(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Reconcile(f.ctx, "feat"); err != nil {
		t.Fatal(err)
	}
	if r := f.record("feat"); r.DeletedAt == nil || len(f.items("feat")) != 0 {
		t.Fatalf("redeployed after a restart while down: %s", r.Status)
	}
	was, err := again.Up(f.ctx, "feat")
	if err != nil || !was {
		t.Fatalf("Up = %v, %v; want true", was, err)
	}
	if _, err := again.Reconcile(f.ctx, "feat"); err != nil {
		t.Fatal(err)
	}
	if r := f.record("feat"); r.DeletedAt != nil || r.Status != env.StatusReady || r.SHA != shaB {
		t.Fatalf("after up: %s %s deleted %v", r.Status, r.SHA, r.DeletedAt)
	}
}

func TestActDownRefusesProduction(t *testing.T) {
	f := newFixture(t)
	f.want(env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: shaA})
	f.mustReconcile(env.ProductionKey)
	if err := f.rec.Down(f.ctx, env.ProductionKey, "token:ci"); err == nil {
		t.Fatal("Down(production) = nil; want an error")
	}
	if down, err := f.st.IsDown(f.ctx, env.ProductionKey); err != nil || down {
		t.Fatalf("production marked down: %v %v", down, err)
	}
}
