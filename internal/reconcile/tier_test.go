package reconcile

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
	"github.com/previewd/previewd/internal/store"
)

// TestDecideTier: a live preview ready or failed at its SHA whose database
// tier is not the one asked for is deployed again; in any other state, at
// the same tier, or for production, the tier decides nothing.
func TestDecideTier(t *testing.T) {
	src := &env.Source{Key: "pr-1", Kind: env.KindPullRequest, Number: 1, Branch: "x", SHA: "bbb", DBTier: env.DBTierClone}
	prodSrc := &env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: "bbb", DBTier: env.DBTierClone}
	rec := func(key string, kind env.Kind, status env.Status, failed string) *store.Record {
		return &store.Record{Environment: env.Environment{Key: key, Kind: kind, Status: status, SHA: "bbb", DBTier: env.DBTierSchema}, FailedSHA: failed}
	}
	change := Tiers{Want: env.DBTierClone, Made: env.DBTierSchema}
	same := Tiers{Want: env.DBTierSchema, Made: env.DBTierSchema}
	tests := map[string]struct {
		o      Observed
		action Action
		reason string
	}{
		"ready, tier changed": {Observed{Key: "pr-1", Desired: src, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusReady, ""), Running: true, RunningSHA: "bbb", Tier: change},
			Deploy, ReasonDBTierChanged},
		"ready, not running, tier changed": {Observed{Key: "pr-1", Desired: src, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusReady, ""), MaxRestarts: 3, Tier: change},
			Deploy, ReasonDBTierChanged},
		"failed at its SHA, tier changed": {Observed{Key: "pr-1", Desired: src, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusFailed, "bbb"), Tier: change},
			Deploy, ReasonDBTierChanged},
		"ready, same tier": {Observed{Key: "pr-1", Desired: src, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusReady, ""), Running: true, RunningSHA: "bbb", Tier: same},
			Nothing, ReasonUpToDate},
		"one tier": {Observed{Key: "pr-1", Desired: src, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusReady, ""), Running: true, RunningSHA: "bbb"},
			Nothing, ReasonUpToDate},
		"failed, same tier": {Observed{Key: "pr-1", Desired: src, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusFailed, "bbb"), Tier: same},
			Nothing, ReasonFailedSHA},
		"sleeping: wakes at its tier later": {Observed{Key: "pr-1", Desired: src, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusSleeping, ""), Tier: change},
			Nothing, ReasonAsleep},
		"building: the deploy going on takes the new tier": {Observed{Key: "pr-1", Desired: src, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusBuilding, ""), Tier: change},
			Deploy, ReasonInterrupted},
		"new commit wins the reason": {Observed{Key: "pr-1", Desired: &env.Source{Key: "pr-1", Kind: env.KindPullRequest, SHA: "ccc", DBTier: env.DBTierClone}, Listed: true, Record: rec("pr-1", env.KindPullRequest, env.StatusReady, ""), Running: true, RunningSHA: "bbb", Tier: change},
			Deploy, ReasonNewCommit},
		"production never changes tier": {Observed{Key: env.ProductionKey, Desired: prodSrc, Listed: true, Record: rec(env.ProductionKey, env.KindProduction, env.StatusReady, ""), Running: true, RunningSHA: "bbb", Tier: change},
			Nothing, ReasonUpToDate},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := Decide(tt.o)
			if p.Action != tt.action || p.Reason != tt.reason {
				t.Fatalf("Decide = %s %s (%s); want %s %s", p.Action, p.Reason, p.Message, tt.action, tt.reason)
			}
			if p.Reason == ReasonDBTierChanged && p.Message != "database tier changed: schema → clone" {
				t.Errorf("message %q", p.Message)
			}
		})
	}
}

// tierServer is one database server shared by fake tiers (fakes of our
// own Provider): what exists, by item.
type tierServer struct {
	mu      sync.Mutex
	objs    map[inventory.ID]bool
	dropErr error
}

// tierFake makes a role and an object of its kind per key.
type tierFake struct {
	srv  *tierServer
	kind env.ItemKind
}

func (f *tierFake) Items(t database.Target) []env.Item {
	if t.Production || t.Key == env.ProductionKey {
		return nil
	}
	return []env.Item{{Kind: env.ItemRole, Name: "p_" + t.Key}, {Kind: f.kind, Name: "p_" + t.Key}}
}

func (f *tierFake) Ensure(_ context.Context, t database.Target) (database.Conn, error) {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	for _, it := range f.Items(t) {
		f.srv.objs[inventory.IDOf(it)] = true
	}
	return database.Conn{Vars: map[string]string{"DATABASE_URL": "postgres://x/" + t.Key}, Name: "p_" + t.Key}, nil
}

func (f *tierFake) Drop(_ context.Context, items []env.Item) error {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	if f.srv.dropErr != nil {
		return f.srv.dropErr
	}
	for _, it := range items {
		if it.Kind == env.ItemRole || it.Kind == f.kind {
			delete(f.srv.objs, inventory.IDOf(it))
		}
	}
	return nil
}

// holds returns the kinds that exist for key, sorted.
func (s *tierServer) holds(key string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id := range s.objs {
		if id.Name == "p_"+key {
			out = append(out, string(id.Kind))
		}
	}
	sort.Strings(out)
	return out
}

func tieredFixture(t *testing.T) (*fixture, *tierServer) {
	srv := &tierServer{objs: map[inventory.ID]bool{}}
	d, err := database.NewTiered([]database.Tier{
		{Name: env.DBTierSchema, Provider: &tierFake{srv, env.ItemSchema}, Kinds: []env.ItemKind{env.ItemRole, env.ItemSchema}},
		{Name: env.DBTierClone, Provider: &tierFake{srv, env.ItemDatabase}, Kinds: []env.ItemKind{env.ItemRole, env.ItemDatabase}},
	}, map[string]string{env.DBTierEmpty: "not in this test"})
	if err != nil {
		t.Fatal(err)
	}
	return newFixture(t, func(o *Options) { o.Database = d }), srv
}

func kinds(items []env.Item) []string {
	var out []string
	for _, it := range items {
		switch it.Kind {
		case env.ItemRole, env.ItemSchema, env.ItemDatabase:
			out = append(out, string(it.Kind))
		}
	}
	sort.Strings(out)
	return out
}

// TestActTierChange, on the real store: a pull request made at the
// default tier (schema) and then labeled preview:db=clone is re-deployed:
// its schema is dropped and gone from the inventory, a database is made
// and recorded, and the ready status says so. A label it cannot have
// leaves the tier (and the data) alone, with a message; a drop that fails
// keeps the old items recorded and the old tier, to be retried.
func TestActTierChange(t *testing.T) {
	f, srv := tieredFixture(t)
	pr := env.Source{Key: "pr-1", Kind: env.KindPullRequest, Number: 1, Branch: "x", SHA: shaA}
	f.want(pr)
	f.mustReconcile("pr-1")
	if r := f.record("pr-1"); r.Status != env.StatusReady || r.DBTier != env.DBTierSchema {
		t.Fatalf("first deploy: %s at tier %q: %s", r.Status, r.DBTier, r.Message)
	}
	if got := srv.holds("pr-1"); !slices.Equal(got, []string{"pg-role", "pg-schema"}) {
		t.Fatalf("made %v", got)
	}

	// Labeled preview:db=clone.
	pr.DBTier = env.DBTierClone
	f.want(pr)
	o, _, err := f.rec.gather(f.ctx, "pr-1")
	if err != nil {
		t.Fatal(err)
	}
	if p := Decide(o); p.Reason != ReasonDBTierChanged {
		t.Fatalf("after the label: %s %s", p.Action, p.Reason)
	}
	f.mustReconcile("pr-1")
	r := f.record("pr-1")
	if r.Status != env.StatusReady || r.DBTier != env.DBTierClone || !strings.Contains(r.Message, "database tier changed from schema to clone; data re-created") {
		t.Errorf("after the change: %s at tier %q: %q", r.Status, r.DBTier, r.Message)
	}
	if got := srv.holds("pr-1"); !slices.Equal(got, []string{"pg-database", "pg-role"}) {
		t.Errorf("after the change the server holds %v, want the database and role", got)
	}
	if got := kinds(f.items("pr-1")); !slices.Equal(got, []string{"pg-database", "pg-role"}) {
		t.Errorf("after the change the inventory holds %v", got)
	}
	n := len(f.events("pr-1"))
	f.mustReconcile("pr-1")
	if len(f.events("pr-1")) != n {
		t.Error("a settled tier change deployed again")
	}

	// A label it cannot have: nothing is re-created; the next deploy says
	// why.
	pr.DBTier = "empty"
	f.want(pr)
	f.mustReconcile("pr-1")
	if len(f.events("pr-1")) != n || f.record("pr-1").DBTier != env.DBTierClone {
		t.Error("a tier not offered re-provisioned the database")
	}
	pr.SHA = shaB
	f.want(pr)
	f.mustReconcile("pr-1")
	r = f.record("pr-1")
	if r.DBTier != env.DBTierClone || !strings.Contains(r.Message, "label preview:db=empty ignored: database tier empty is not offered: not in this test; the database stays at tier clone") {
		t.Errorf("unusable label: tier %q, %q", r.DBTier, r.Message)
	}

	// The label taken off: back to the default; the drop fails first.
	pr.DBTier = ""
	f.want(pr)
	srv.dropErr = errors.New("server gone")
	if _, err := f.reconcile("pr-1"); err == nil {
		t.Fatal("a failed drop did not fail the deploy")
	}
	if r := f.record("pr-1"); r.DBTier != env.DBTierClone || r.Status != env.StatusFailed {
		t.Errorf("after a failed drop: %s at tier %q", r.Status, r.DBTier)
	}
	if got := kinds(f.items("pr-1")); !slices.Equal(got, []string{"pg-database", "pg-role"}) {
		t.Errorf("after a failed drop the inventory holds %v", got)
	}
	srv.dropErr = nil
	f.mustReconcile("pr-1")
	if r := f.record("pr-1"); r.DBTier != env.DBTierSchema || r.Status != env.StatusReady {
		t.Errorf("after the retry: %s at tier %q: %s", r.Status, r.DBTier, r.Message)
	}
	if got := srv.holds("pr-1"); !slices.Equal(got, []string{"pg-role", "pg-schema"}) {
		t.Errorf("after the retry the server holds %v", got)
	}
}

// TestActTierProduction: production's label is ignored; it is made at no
// tier, nothing of it is dropped, and its record keeps no tier.
func TestActTierProduction(t *testing.T) {
	f, srv := tieredFixture(t)
	prod := env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: shaA}
	f.want(prod)
	f.mustReconcile(env.ProductionKey)
	prod.DBTier, prod.SHA = env.DBTierClone, shaB
	f.want(prod)
	f.mustReconcile(env.ProductionKey)
	r := f.record(env.ProductionKey)
	if r.Status != env.StatusReady || r.DBTier != "" || strings.Contains(r.Message, "tier") {
		t.Errorf("production: %s at tier %q: %q", r.Status, r.DBTier, r.Message)
	}
	if got := srv.holds(env.ProductionKey); got != nil || len(kinds(f.items(env.ProductionKey))) != 0 {
		t.Errorf("production has database items: %v", got)
	}
}

// TestActTierOneTier: with a provider of one tier (sqlite's), the label
// changes nothing and the ready status says it is ignored.
func TestActTierOneTier(t *testing.T) {
	f := newFixture(t)
	pr := env.Source{Key: "pr-2", Kind: env.KindPullRequest, Number: 2, Branch: "y", SHA: shaA, DBTier: env.DBTierClone}
	f.want(pr)
	f.mustReconcile("pr-2")
	r := f.record("pr-2")
	if r.Status != env.StatusReady || r.DBTier != "" || !strings.Contains(r.Message, "label preview:db=clone ignored: this database has one tier") {
		t.Errorf("one tier: %s at %q: %q", r.Status, r.DBTier, r.Message)
	}
}

// TestActTierAskedByCommand, on the real store: /preview db clone
// (AskTier) re-deploys a schema-tier preview as a clone, announced; a
// label asking otherwise wins over the command, and the answer says so;
// "default" clears the ask; a tier not offered, production and a provider
// with one tier are refused with the reason, and nothing is recorded.
func TestActTierAskedByCommand(t *testing.T) {
	f, srv := tieredFixture(t)
	pr := env.Source{Key: "pr-1", Kind: env.KindPullRequest, Number: 1, Branch: "x", SHA: shaA}
	f.want(pr)
	f.mustReconcile("pr-1")

	a, err := f.rec.AskTier(f.ctx, "pr-1", env.DBTierClone)
	if err != nil || a != (env.TierChoice{Tier: env.DBTierClone, Made: env.DBTierSchema}) {
		t.Fatalf("AskTier clone = %+v, %v", a, err)
	}
	f.mustReconcile("pr-1")
	r := f.record("pr-1")
	if r.Status != env.StatusReady || r.DBTier != env.DBTierClone || r.DBTierAsked != env.DBTierClone || !strings.Contains(r.Message, "database tier changed from schema to clone") {
		t.Fatalf("after /preview db clone: %s at tier %q (asked %q): %q", r.Status, r.DBTier, r.DBTierAsked, r.Message)
	}
	if got := srv.holds("pr-1"); !slices.Equal(got, []string{"pg-database", "pg-role"}) {
		t.Errorf("after the command the server holds %v", got)
	}

	// A label wins over the command.
	pr.DBTier = env.DBTierSchema
	f.want(pr)
	if a, err := f.rec.AskTier(f.ctx, "pr-1", env.DBTierClone); err != nil || a.Label != env.DBTierSchema {
		t.Errorf("AskTier under a label = %+v, %v; want the label named", a, err)
	}
	f.mustReconcile("pr-1")
	if r := f.record("pr-1"); r.DBTier != env.DBTierSchema {
		t.Errorf("the label did not win: tier %q", r.DBTier)
	}
	pr.DBTier = ""
	f.want(pr)
	f.mustReconcile("pr-1")
	if r := f.record("pr-1"); r.DBTier != env.DBTierClone {
		t.Errorf("the label taken off: tier %q, want the command's clone", r.DBTier)
	}

	// default clears it: back to the configured tier.
	if a, err := f.rec.AskTier(f.ctx, "pr-1", "default"); err != nil || a.Tier != env.DBTierSchema {
		t.Errorf("AskTier default = %+v, %v", a, err)
	}
	f.mustReconcile("pr-1")
	if r := f.record("pr-1"); r.DBTier != env.DBTierSchema || r.DBTierAsked != "" {
		t.Errorf("after default: tier %q asked %q", r.DBTier, r.DBTierAsked)
	}

	for _, c := range []struct{ key, tier, err string }{
		{"pr-1", env.DBTierEmpty, "database tier empty is not offered: not in this test"},
		{"pr-1", "gold", `unknown database tier "gold"`},
		{env.ProductionKey, env.DBTierClone, "production's database never changes tier"},
		{"pr-9", env.DBTierClone, "not found"},
	} {
		if _, err := f.rec.AskTier(f.ctx, c.key, c.tier); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("AskTier(%s, %s) = %v, want %q", c.key, c.tier, err, c.err)
		}
	}
	if r := f.record("pr-1"); r.DBTierAsked != "" {
		t.Errorf("a refused ask was recorded: %q", r.DBTierAsked)
	}

	one := newFixture(t, func(o *Options) {})
	one.want(pr)
	one.mustReconcile("pr-1")
	if _, err := one.rec.AskTier(one.ctx, "pr-1", env.DBTierClone); !errors.Is(err, ErrOneTier) {
		t.Errorf("one tier: %v", err)
	}
}
