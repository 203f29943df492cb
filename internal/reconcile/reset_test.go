package reconcile

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/store"
)

// resettingDatabase is fakeDatabase that resets and seeds: Reset runs
// prepare against a "next" database and swaps only when it succeeds.
type resettingDatabase struct {
	*fakeDatabase
	mu        sync.Mutex
	resets    int      // swaps done
	seeded    []string // the seeds run, by database URL
	seedErr   error
	itemsSeen func() []env.Item
	during    []env.Item
}

var (
	_ database.Resetter = (*resettingDatabase)(nil)
	_ database.Seeder   = (*resettingDatabase)(nil)
)

func (d *resettingDatabase) ResetItems(t database.Target) []env.Item {
	return []env.Item{{Kind: env.ItemSQLite, Name: t.Key + "$next"}}
}

func (d *resettingDatabase) Reset(ctx context.Context, t database.Target, prepare func(context.Context, database.Conn) error) (database.Conn, error) {
	d.during = d.itemsSeen()
	next := database.Conn{Vars: map[string]string{"DATABASE_URL": "sqlite:/db/" + t.Key + ".next"}}
	if err := prepare(ctx, next); err != nil {
		return database.Conn{}, err
	}
	d.mu.Lock()
	d.resets++
	d.mu.Unlock()
	return database.Conn{Vars: map[string]string{"DATABASE_URL": "sqlite:/db/" + t.Key + ".db"}}, nil
}

func (d *resettingDatabase) Seed(ctx context.Context, c database.Conn, sql string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seedErr != nil {
		return d.seedErr
	}
	d.seeded = append(d.seeded, c.Vars["DATABASE_URL"]+" "+sql)
	return nil
}

// fileRuntime is fakeRuntime that reads the seed from "the commit" and
// records the migrate command of each migration's spec.
type fileRuntime struct {
	*fakeRuntime
	files    map[string]string // path -> content, at every SHA
	migrates []string          // the spec's Migrate of each Migrate ("-": none)
}

func (f *fileRuntime) Migrate(ctx context.Context, rel *env.Release) error {
	m := "-"
	if rel.Spec != nil {
		m = rel.Spec.Migrate
	}
	f.mu.Lock()
	f.migrates = append(f.migrates, m)
	f.mu.Unlock()
	return f.fakeRuntime.Migrate(ctx, rel)
}

func (f *fileRuntime) ReadFile(ctx context.Context, src env.Source, path string) ([]byte, error) {
	s, ok := f.files[path]
	if !ok {
		return nil, errors.New(path + " at " + env.ShortSHA(src.SHA) + ": no such file in the commit")
	}
	return []byte(s), nil
}

func resetFixture(t *testing.T, seed string) (*fixture, *resettingDatabase) {
	var rd *resettingDatabase
	f := newFixture(t, func(o *Options) {
		rd = &resettingDatabase{fakeDatabase: o.Database.(*fakeDatabase)}
		o.Database = rd
		o.Runtime = &fileRuntime{fakeRuntime: o.Runtime.(*fakeRuntime), files: map[string]string{"db/seed.sql": "INSERT INTO t VALUES (1)"}}
		o.SeedPath = seed
	})
	rd.itemsSeen = func() []env.Item { return f.items("feat") }
	return f, rd
}

func reasons(f *fixture, key string) string {
	var rs []string
	for _, ev := range f.events(key) {
		rs = append([]string{ev.Reason}, rs...)
	}
	return strings.Join(rs, ",")
}

// TestActSeedOnlyInAFreshDatabase: the seed runs after the migrations of
// a new preview, not after those of its next commit.
func TestActSeedOnlyInAFreshDatabase(t *testing.T) {
	f, rd := resetFixture(t, "db/seed.sql")
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	f.want(branch("feat", shaB))
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady || r.SHA != shaB {
		t.Fatalf("record %s %s: %s", r.Status, r.SHA, r.Message)
	}
	if len(rd.seeded) != 1 || rd.seeded[0] != "sqlite:/db/feat.db INSERT INTO t VALUES (1)" {
		t.Errorf("seeded %q; want once, in the new database", rd.seeded)
	}
}

// TestActSeedFailure: a seed that fails (or is missing from the commit)
// fails the rollout of that SHA, naming the step.
func TestActSeedFailure(t *testing.T) {
	f, _ := resetFixture(t, "db/missing.sql")
	f.want(branch("feat", shaA))
	if _, err := f.reconcile("feat"); err == nil {
		t.Fatal("no error")
	}
	if r := f.record("feat"); r.Status != env.StatusFailed || !strings.Contains(r.Message, "seed of ") || !strings.Contains(r.Message, "db/missing.sql") {
		t.Errorf("record %s %q", r.Status, r.Message)
	}
}

// TestActResetDB: a ready preview's reset runs migrate and the seed in the
// fresh database, swaps it in, keeps the preview ready (no rebuild), and
// removes what the reset made besides; the request is handled once.
func TestActResetDB(t *testing.T) {
	f, rd := resetFixture(t, "db/seed.sql")
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	prepared := f.rt.prepared
	f.rec.ResetDB("feat")
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady || !strings.Contains(r.Message, "database reset in") {
		t.Fatalf("record %s %q", r.Status, r.Message)
	}
	if rd.resets != 1 || len(rd.seeded) != 2 || !strings.HasPrefix(rd.seeded[1], "sqlite:/db/feat.next ") {
		t.Errorf("resets %d, seeded %q; want the second seed in the next database", rd.resets, rd.seeded)
	}
	next := inventory.ID{Kind: env.ItemSQLite, Name: "feat$next"}
	if !inventory.Has(rd.during, next) || inventory.Has(f.items("feat"), next) {
		t.Errorf("the reset's items: during %v, after %v", rd.during, f.items("feat"))
	}
	if !strings.HasSuffix(reasons(f, "feat"), "Ready,ResettingDatabase,DatabaseReset") {
		t.Errorf("events %s", reasons(f, "feat"))
	}
	if f.rt.prepared != prepared+1 {
		t.Errorf("prepared %d times; want one more (the checkout for migrate), no rebuild", f.rt.prepared-prepared)
	}
	// Handled: the next look does nothing.
	f.mustReconcile("feat")
	if rd.resets != 1 {
		t.Errorf("reset again: %d", rd.resets)
	}
}

// TestActResetDBUsesTheCommitsSpec: the reset's migration is the one the
// commit's spec (the repository's file) names, as its rollout's was.
func TestActResetDBUsesTheCommitsSpec(t *testing.T) {
	var fr *fileRuntime
	f := newFixture(t, func(o *Options) {
		o.Database = &resettingDatabase{fakeDatabase: o.Database.(*fakeDatabase), itemsSeen: func() []env.Item { return nil }}
		fr = &fileRuntime{fakeRuntime: o.Runtime.(*fakeRuntime)}
		o.Runtime = fr
		o.Specs = &fakeSpecs{specs: map[string]env.AppSpec{shaA: {Run: "./a", Migrate: "./a migrate"}}}
	})
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	f.rec.ResetDB("feat")
	f.mustReconcile("feat")
	if r := f.record("feat"); !strings.Contains(r.Message, "database reset in") {
		t.Fatalf("record %s %q", r.Status, r.Message)
	}
	if got := strings.Join(fr.migrates, ","); got != "./a migrate,./a migrate" {
		t.Errorf("migrations ran with %q; want the commit's, at the rollout and the reset", got)
	}
}

// TestActResetDBFailureKeepsTheOld: a migration that fails in the fresh
// database keeps the old one serving and says so; nothing is retried.
func TestActResetDBFailureKeepsTheOld(t *testing.T) {
	f, rd := resetFixture(t, "")
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	f.rt.migrateErr = &env.StepError{Step: "migrate", Err: errors.New("exit status 1"), Tail: "relation already exists"}
	f.rec.ResetDB("feat")
	f.mustReconcile("feat")
	r := f.record("feat")
	if r.Status != env.StatusReady || !strings.Contains(r.Message, "reset-db failed at migrate; the old database is kept") || !strings.Contains(r.Message, "relation already exists") {
		t.Fatalf("record %s %q", r.Status, r.Message)
	}
	if rd.resets != 0 || len(f.items("feat")) == 0 || inventory.Has(f.items("feat"), inventory.ID{Kind: env.ItemSQLite, Name: "feat$next"}) {
		t.Errorf("resets %d, items %v", rd.resets, f.items("feat"))
	}
}

// TestActResetDBOfAFailedPreview: a failed preview's fresh database is
// followed by a new try of its SHA.
func TestActResetDBOfAFailedPreview(t *testing.T) {
	f, _ := resetFixture(t, "")
	f.rt.migrateErr = &env.StepError{Step: "migrate", Err: errors.New("exit status 1")}
	f.want(branch("feat", shaA))
	if _, err := f.reconcile("feat"); err == nil {
		t.Fatal("no error")
	}
	f.rt.migrateErr = nil
	f.rec.ResetDB("feat")
	f.mustReconcile("feat")
	if r := f.record("feat"); r.FailedSHA != "" || !strings.Contains(r.Message, "deploying") {
		t.Fatalf("after the reset: %s %q failed %q", r.Status, r.Message, r.FailedSHA)
	}
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady {
		t.Errorf("then %s %q", r.Status, r.Message)
	}
}

// TestDecideResetDB: a reset runs when the preview is ready at its SHA,
// sleeping or failed, waits during a rollout, and never for production.
func TestDecideResetDB(t *testing.T) {
	src := branch("feat", shaA)
	for _, tc := range []struct {
		name    string
		status  env.Status
		running bool
		prod    bool
		want    Action
	}{
		{"ready", env.StatusReady, true, false, ResetDB},
		{"sleeping", env.StatusSleeping, false, false, ResetDB},
		{"failed", env.StatusFailed, false, false, ResetDB},
		{"building", env.StatusBuilding, false, false, Deploy},
		{"ready but exited (restart first)", env.StatusReady, false, false, Wait},
		{"production", env.StatusReady, true, true, Nothing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := src
			if tc.prod {
				s = env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: shaA}
			}
			rec := store.Record{Environment: env.Environment{Key: s.Key, Kind: s.Kind, Status: tc.status, SHA: s.SHA, UpdatedAt: time.Now()}}
			if tc.status == env.StatusFailed {
				rec.FailedSHA = shaA
			}
			o := Observed{Key: s.Key, Desired: &s, Listed: true, Record: &rec, Running: tc.running, MaxRestarts: 3, ResetDB: true, Now: time.Now(),
				Items: []env.Item{{Kind: env.ItemWorkDir, Name: "/x"}}}
			if tc.running {
				o.RunningSHA = shaA
			}
			if got := Decide(o); got.Action != tc.want {
				t.Errorf("Decide = %s (%s); want %s", got.Action, got.Message, tc.want)
			}
		})
	}
}
