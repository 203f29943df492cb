package store

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

func ptr[T any](v T) *T { return &v }

// TestEnvironments: the life of environment rows is the same on every
// backend: unknown keys are ErrNotFound, Live lists production first and
// then keys in byte order, Set changes only the fields it is given, a
// removed environment keeps its row out of Live, and Upsert brings it back
// as new while keeping a live one's state.
func TestEnvironments(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		clk := newClock()
		s.now = clk.now

		if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := s.GetRecord(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetRecord(unknown) = %v, want ErrNotFound", err)
		}
		for _, src := range []env.Source{
			{Key: "feat-b", Kind: env.KindBranch, Branch: "feat/b"},
			{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "x"},
			{Key: "Zed", Kind: env.KindBranch, Branch: "Zed"},
			{Key: "main", Kind: env.KindProduction, Branch: "main"},
		} {
			if err := s.Upsert(ctx, src); err != nil {
				t.Fatal(err)
			}
		}
		created := clk.now()
		if got, want := liveKeys(t, s), []string{"main", "Zed", "feat-b", "pr-7"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Live = %v, want %v (production first, then byte order)", got, want)
		}
		pr, err := s.Get(ctx, "pr-7")
		if err != nil {
			t.Fatal(err)
		}
		if pr.Kind != env.KindPullRequest || pr.Number != 7 || pr.Branch != "x" || pr.Status != env.Status("pending") ||
			!pr.CreatedAt.Equal(created) || pr.ReadyAt != nil || pr.DeletedAt != nil {
			t.Errorf("new pr-7 = %+v", pr)
		}

		ready := clk.step(time.Second)
		deployed := env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, SHA: "abc", Ref: "refs/pull/7/head"}
		if err := s.Set(ctx, "pr-7", Update{SHA: ptr("abc"), Status: ptr(env.Status("ready")), Message: ptr("up"),
			URL: ptr("http://pr-7"), Database: ptr("db7"), FailedSHA: ptr("bad"), Restarts: ptr(3), Deployed: &deployed, Ready: true}); err != nil {
			t.Fatal(err)
		}
		clk.step(time.Second)
		if err := s.Set(ctx, "pr-7", Update{Message: ptr("still up")}); err != nil {
			t.Fatal(err)
		}
		r, err := s.GetRecord(ctx, "pr-7")
		if err != nil {
			t.Fatal(err)
		}
		if r.SHA != "abc" || r.Status != "ready" || r.Message != "still up" || r.URL != "http://pr-7" || r.Database != "db7" ||
			r.FailedSHA != "bad" || r.Restarts != 3 || r.ReadyAt == nil || !r.ReadyAt.Equal(ready) || !r.UpdatedAt.Equal(clk.now()) {
			t.Errorf("record after Set = %+v", r)
		}
		if r.Deployed == nil || !reflect.DeepEqual(*r.Deployed, deployed) {
			t.Errorf("Deployed = %+v, want %+v", r.Deployed, deployed)
		}

		// Upsert of a live environment updates identity, keeps state.
		if err := s.Upsert(ctx, env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "y"}); err != nil {
			t.Fatal(err)
		}
		if r, err = s.GetRecord(ctx, "pr-7"); err != nil {
			t.Fatal(err)
		}
		if r.Branch != "y" || r.SHA != "abc" || r.Status != "ready" || r.FailedSHA != "bad" || !r.CreatedAt.Equal(created) {
			t.Errorf("live pr-7 after Upsert = %+v", r)
		}

		removed := clk.step(time.Second)
		if err := s.Set(ctx, "pr-7", Update{Deleted: true, Status: ptr(env.Status("removed"))}); err != nil {
			t.Fatal(err)
		}
		if got, want := liveKeys(t, s), []string{"main", "Zed", "feat-b"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Live after removal = %v, want %v", got, want)
		}
		gone, err := s.Get(ctx, "pr-7")
		if err != nil || gone.DeletedAt == nil || !gone.DeletedAt.Equal(removed) {
			t.Errorf("removed pr-7 = %+v, %v; want its row with deletedAt", gone, err)
		}

		// Upsert of a removed environment starts it afresh.
		back := clk.step(time.Second)
		if err := s.Upsert(ctx, env.Source{Key: "pr-7", Kind: env.KindPullRequest, Number: 7, Branch: "z"}); err != nil {
			t.Fatal(err)
		}
		if r, err = s.GetRecord(ctx, "pr-7"); err != nil {
			t.Fatal(err)
		}
		if r.DeletedAt != nil || r.Status != "pending" || r.SHA != "" || r.FailedSHA != "" || r.Branch != "z" ||
			!r.CreatedAt.Equal(back) || !r.UpdatedAt.Equal(back) {
			t.Errorf("revived pr-7 = %+v", r)
		}
		// Nothing of its previous life: no SHA to fall back to (nor to
		// list to Argo CD), no ready time, no restarts.
		if r.Deployed != nil || r.ReadyAt != nil || r.Restarts != 0 {
			t.Errorf("revived pr-7 keeps its previous life: deployed %+v, readyAt %v, restarts %d", r.Deployed, r.ReadyAt, r.Restarts)
		}
	})
}

func liveKeys(t *testing.T, s *Store) []string {
	t.Helper()
	live, err := s.Live(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range live {
		keys = append(keys, e.Key)
	}
	return keys
}

// TestEvents: history comes newest first, limited, with times to the
// millisecond, per key.
func TestEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		clk := newClock()
		s.now = clk.now
		at := time.UnixMilli(1_600_000_000_123).UTC()
		if err := s.AddEvent(ctx, "a", env.Event{Time: at, Reason: "Building", Message: "one", SHA: "s1"}); err != nil {
			t.Fatal(err)
		}
		for i := 2; i <= 4; i++ {
			clk.step(time.Millisecond)
			if err := s.AddEvent(ctx, "a", env.Event{Reason: "Ready", Message: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddEvent(ctx, "b", env.Event{Reason: "Ready", Message: "b"}); err != nil {
			t.Fatal(err)
		}
		evs, err := s.Events(ctx, "a", 10)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, ev := range evs {
			msgs = append(msgs, ev.Message)
		}
		if want := []string{"4", "3", "2", "one"}; !reflect.DeepEqual(msgs, want) {
			t.Errorf("events of a = %v, want %v", msgs, want)
		}
		if last := evs[len(evs)-1]; !reflect.DeepEqual(last, env.Event{Time: at, Reason: "Building", Message: "one", SHA: "s1"}) {
			t.Errorf("oldest event = %+v", last)
		}
		if !evs[0].Time.Equal(clk.now()) {
			t.Errorf("event without a time got %v, want the store's now %v", evs[0].Time, clk.now())
		}
		if evs, err := s.Events(ctx, "a", 2); err != nil || len(evs) != 2 || evs[0].Message != "4" {
			t.Errorf("Events(a, 2) = %+v, %v", evs, err)
		}
		if evs, err := s.Events(ctx, "none", 5); err != nil || len(evs) != 0 {
			t.Errorf("Events(none) = %+v, %v; want none", evs, err)
		}
	})
}

// TestEventsPruned: an environment's history keeps its newest MaxEvents
// events, so a teardown retried for days or a crash loop cannot grow the
// store without bound, and other environments' histories are untouched.
func TestEventsPruned(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		if err := s.AddEvent(ctx, "other", env.Event{Reason: "Ready", Message: "other"}); err != nil {
			t.Fatal(err)
		}
		n := MaxEvents + 50
		for i := 0; i < n; i++ {
			if err := s.AddEvent(ctx, "feat", env.Event{Reason: "RemovalRetrying", Message: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if rows := s.count(t, `SELECT count(*) FROM events WHERE key = ?`, "feat"); rows != MaxEvents {
			t.Errorf("feat keeps %d events, want %d", rows, MaxEvents)
		}
		evs, err := s.Events(ctx, "feat", MaxEvents+10)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != MaxEvents || evs[0].Message != fmt.Sprint(n-1) || evs[len(evs)-1].Message != fmt.Sprint(n-MaxEvents) {
			t.Errorf("feat's history has %d events, newest %q, oldest %q; want %d from %d to %d",
				len(evs), evs[0].Message, evs[len(evs)-1].Message, MaxEvents, n-1, n-MaxEvents)
		}
		if other, err := s.Events(ctx, "other", 10); err != nil || len(other) != 1 {
			t.Errorf("other's history = %+v, %v; want its one event", other, err)
		}
	})
}

// TestInventory: items come in the order they were first recorded (then
// kind and name), PutItem of a known item updates its data in place, and
// DeleteItem forgets one item of one environment.
func TestInventory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.open(t)
		clk := newClock()
		s.now = clk.now
		put := func(key string, it env.Item) {
			t.Helper()
			if err := s.PutItem(ctx, key, it); err != nil {
				t.Fatal(err)
			}
		}
		put("a", env.Item{Kind: env.ItemWorkDir, Name: "w1", Data: []byte(`{"sha":"1"}`)})
		clk.step(time.Millisecond)
		put("a", env.Item{Kind: env.ItemSchema, Name: "s"})
		put("a", env.Item{Kind: env.ItemRole, Name: "r"})
		put("a", env.Item{Kind: env.ItemRole, Name: "R"})
		put("b", env.Item{Kind: env.ItemProcess, Name: "42"})
		clk.step(time.Millisecond)
		put("a", env.Item{Kind: env.ItemWorkDir, Name: "w1", Data: []byte(`{"sha":"2"}`)}) // update keeps its place

		want := []env.Item{
			{Kind: env.ItemWorkDir, Name: "w1", Data: []byte(`{"sha":"2"}`)},
			{Kind: env.ItemRole, Name: "R"},
			{Kind: env.ItemRole, Name: "r"},
			{Kind: env.ItemSchema, Name: "s"},
		}
		items, err := s.Items(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(items, want) {
			t.Errorf("Items(a) = %s, want %s", items, want)
		}
		all, err := s.AllItems(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(all, map[string][]env.Item{"a": want, "b": {{Kind: env.ItemProcess, Name: "42"}}}) {
			t.Errorf("AllItems = %s", all)
		}
		if err := s.DeleteItem(ctx, "a", env.Item{Kind: env.ItemRole, Name: "r"}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteItem(ctx, "a", env.Item{Kind: env.ItemRole, Name: "absent"}); err != nil {
			t.Errorf("deleting an unknown item: %v", err)
		}
		if items, err = s.Items(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(items, []env.Item{want[0], want[1], want[3]}) {
			t.Errorf("Items(a) after delete = %s", items)
		}
		if items, err := s.Items(ctx, "none"); err != nil || len(items) != 0 {
			t.Errorf("Items(none) = %s, %v; want none", items, err)
		}
	})
}

func TestPlaceholders(t *testing.T) {
	pg := &Store{d: pgDialect}
	if got, want := pg.q(`SELECT a FROM t WHERE k = ? AND n IN (?, ?)`), `SELECT a FROM t WHERE k = $1 AND n IN ($2, $3)`; got != want {
		t.Errorf("postgres q = %q, want %q", got, want)
	}
	lite := &Store{d: sqliteDialect}
	if got, want := lite.q(`SELECT ? , ?`), `SELECT ? , ?`; got != want {
		t.Errorf("sqlite q = %q, want %q", got, want)
	}
}
