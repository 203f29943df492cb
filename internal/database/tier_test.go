package database_test

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
)

// fakeServer is one database server the fake tiers share, as the
// postgres tiers share one: what exists, by item, and which tier made it.
type fakeServer struct {
	mu   sync.Mutex
	objs map[inventory.ID]string
	// failDrop makes dropping objects of that name fail with the error.
	failDrop map[string]error
}

// fakeTier is a Provider of one kind of database (a fake of our own
// interface): it makes a role and an object of its kind, drops only
// those kinds, and collects what it made that no live key owns.
type fakeTier struct {
	srv   *fakeServer
	kind  env.ItemKind
	label string
}

func (f *fakeTier) Items(t database.Target) []env.Item {
	if t.Production {
		return nil
	}
	return []env.Item{{Kind: env.ItemRole, Name: "r_" + t.Key}, {Kind: f.kind, Name: "r_" + t.Key}}
}

func (f *fakeTier) Ensure(_ context.Context, t database.Target) (database.Conn, error) {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	for _, it := range f.Items(t) {
		f.srv.objs[inventory.IDOf(it)] = f.label
	}
	return database.Conn{Vars: map[string]string{"TIER": f.label}, Name: f.label + " " + t.Key}, nil
}

func (f *fakeTier) Drop(_ context.Context, items []env.Item) error {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	var left []env.Item
	var errs []error
	for _, it := range items {
		if it.Kind != env.ItemRole && it.Kind != f.kind {
			continue
		}
		if err := f.srv.failDrop[it.Name]; err != nil {
			left, errs = append(left, it), append(errs, err)
			continue
		}
		delete(f.srv.objs, inventory.IDOf(it))
	}
	if len(errs) > 0 {
		return &database.LeftError{Items: left, Err: errors.Join(errs...)}
	}
	return nil
}

func (f *fakeTier) Collect(_ context.Context, live map[string]bool) ([]string, error) {
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	var out []string
	for id, label := range f.srv.objs {
		if label == f.label && !live[strings.TrimPrefix(id.Name, "r_")] {
			delete(f.srv.objs, id)
			out = append(out, id.String())
		}
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeTier) Size(context.Context, database.Target) (int64, error) {
	return int64(len(f.label)), nil
}

// holds returns what exists of key, as kind/tier, sorted.
func (s *fakeServer) holds(key string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, label := range s.objs {
		if id.Name == "r_"+key {
			out = append(out, string(id.Kind)+"/"+label)
		}
	}
	sort.Strings(out)
	return out
}

func newTiered(t *testing.T) (*database.Tiered, *fakeServer) {
	srv := &fakeServer{objs: map[inventory.ID]string{}, failDrop: map[string]error{}}
	d, err := database.NewTiered([]database.Tier{
		{Name: env.DBTierSchema, Provider: &fakeTier{srv, env.ItemSchema, "schema"}, Kinds: []env.ItemKind{env.ItemRole, env.ItemSchema}},
		{Name: env.DBTierClone, Provider: &fakeTier{srv, env.ItemDatabase, "clone"}, Kinds: []env.ItemKind{env.ItemRole, env.ItemDatabase}},
		{Name: env.DBTierEmpty, Provider: &fakeTier{srv, env.ItemDatabase, "empty"}, Kinds: []env.ItemKind{env.ItemRole, env.ItemDatabase}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, srv
}

// TestTieredRouting: a Target's tier chooses the provider of Items,
// Ensure and Size (empty: the default, the first); Drop routes by the
// items alone, a role with the database it owns; Collect unions the
// tiers' collectors with the same live keys.
func TestTieredRouting(t *testing.T) {
	ctx := t.Context()
	d, srv := newTiered(t)
	if d.Default() != env.DBTierSchema {
		t.Fatalf("default %q", d.Default())
	}
	tiers := map[string]string{"pr-1": "", "pr-2": env.DBTierSchema, "pr-3": env.DBTierClone, "pr-4": env.DBTierEmpty}
	for key, tier := range tiers {
		if _, err := d.Ensure(ctx, database.Target{Key: key, Tier: tier}); err != nil {
			t.Fatal(err)
		}
	}
	for key, want := range map[string][]string{
		"pr-1": {"pg-role/schema", "pg-schema/schema"},
		"pr-2": {"pg-role/schema", "pg-schema/schema"},
		"pr-3": {"pg-database/clone", "pg-role/clone"},
		"pr-4": {"pg-database/empty", "pg-role/empty"},
	} {
		if got := srv.holds(key); !slices.Equal(got, want) {
			t.Errorf("%s at tier %q: %v, want %v", key, tiers[key], got, want)
		}
	}
	if n, err := d.Size(ctx, database.Target{Key: "pr-3", Tier: env.DBTierClone}); err != nil || n != int64(len("clone")) {
		t.Errorf("Size(clone) = %d, %v; want the clone tier's", n, err)
	}
	if items := d.Items(database.Target{Key: "pr-9", Tier: "gold"}); items != nil {
		t.Errorf("Items of an unknown tier: %v", items)
	}
	if _, err := d.Ensure(ctx, database.Target{Key: "pr-9", Tier: "gold"}); err == nil {
		t.Error("Ensure at an unknown tier succeeded")
	}
	if srv.holds("pr-9") != nil {
		t.Error("an unknown tier made something")
	}

	// Drop knows no tier: it routes by the items (a schema to the schema
	// tier, a database and its role to a database tier); items no tier
	// makes are ignored; other environments keep theirs.
	items := append(d.Items(database.Target{Key: "pr-3", Tier: env.DBTierClone}), d.Items(database.Target{Key: "pr-1"})...)
	items = append(items, env.Item{Kind: env.ItemWorkDir, Name: "pr-1"})
	if err := d.Drop(ctx, items); err != nil {
		t.Fatal(err)
	}
	if got := append(srv.holds("pr-3"), srv.holds("pr-1")...); got != nil {
		t.Errorf("after Drop: %v left", got)
	}
	if got := srv.holds("pr-2"); len(got) != 2 {
		t.Errorf("Drop took pr-2's schema: %v", got)
	}

	// What one tier leaves is named; the rest goes.
	boom := errors.New("boom")
	srv.failDrop["r_pr-2"] = boom
	both := append(d.Items(database.Target{Key: "pr-2"}), d.Items(database.Target{Key: "pr-4", Tier: env.DBTierEmpty})...)
	err := d.Drop(ctx, both)
	if left := database.Left(both, err); !errors.Is(err, boom) || len(left) != 2 || left[0].Name != "r_pr-2" || left[1].Name != "r_pr-2" {
		t.Errorf("Drop = %v, left %v; want pr-2's two items left", err, left)
	}
	if got := srv.holds("pr-4"); got != nil {
		t.Errorf("pr-4 not dropped: %v", got)
	}
	delete(srv.failDrop, "r_pr-2")

	// Collect: every tier, with the same live keys; a live environment
	// keeps its database whatever its tier.
	for _, tg := range []database.Target{{Key: "pr-4", Tier: env.DBTierEmpty}, {Key: "pr-5", Tier: env.DBTierClone}, {Key: "pr-6"}} {
		if _, err := d.Ensure(ctx, tg); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := d.Collect(ctx, map[string]bool{"pr-2": true, "pr-4": true})
	want := []string{"pg-database/r_pr-5", "pg-role/r_pr-5", "pg-role/r_pr-6", "pg-schema/r_pr-6"}
	sort.Strings(removed)
	if err != nil || !slices.Equal(removed, want) {
		t.Errorf("Collect = %v, %v; want %v", removed, err, want)
	}
	if len(srv.holds("pr-2")) != 2 || len(srv.holds("pr-4")) != 2 {
		t.Errorf("Collect took a live environment's database: pr-2 %v, pr-4 %v", srv.holds("pr-2"), srv.holds("pr-4"))
	}
}

// TestTieredResolve: what a source's DBTier resolves to, and the error
// the pull request gets when it cannot have it.
func TestTieredResolve(t *testing.T) {
	d, err := database.NewTiered([]database.Tier{
		{Name: env.DBTierSchema, Provider: database.None{}, Kinds: []env.ItemKind{env.ItemSchema}},
		{Name: env.DBTierEmpty, Provider: database.None{}, Kinds: []env.ItemKind{env.ItemDatabase}},
	}, map[string]string{env.DBTierClone: "no database.postgres.template"})
	if err != nil {
		t.Fatal(err)
	}
	for asked, want := range map[string]struct{ tier, err string }{
		"":              {env.DBTierSchema, ""},
		"schema":        {env.DBTierSchema, ""},
		"empty":         {env.DBTierEmpty, ""},
		"clone":         {"", "database tier clone is not offered: no database.postgres.template"},
		"clnoe":         {"", `unknown database tier "clnoe": want schema, clone or empty`},
		"empty, schema": {"", "the labels ask for several database tiers (empty, schema)"},
	} {
		tier, err := d.Resolve(asked)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if tier != want.tier || msg != want.err {
			t.Errorf("Resolve(%q) = %q, %q; want %q, %q", asked, tier, msg, want.tier, want.err)
		}
	}
	for name, tiers := range map[string][]database.Tier{
		"none":      nil,
		"unknown":   {{Name: "gold", Provider: database.None{}, Kinds: []env.ItemKind{env.ItemSchema}}},
		"twice":     {{Name: "schema", Provider: database.None{}, Kinds: []env.ItemKind{env.ItemSchema}}, {Name: "schema", Provider: database.None{}, Kinds: []env.ItemKind{env.ItemSchema}}},
		"no kinds":  {{Name: "schema", Provider: database.None{}}},
		"no provid": {{Name: "schema", Kinds: []env.ItemKind{env.ItemSchema}}},
	} {
		if _, err := database.NewTiered(tiers, nil); err == nil {
			t.Errorf("%s: NewTiered accepted %v", name, tiers)
		}
	}
}
