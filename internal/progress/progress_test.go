package progress

import (
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

const sha = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"

func TestLine(t *testing.T) {
	for name, tc := range map[string]struct {
		c    env.Change
		want string
	}{
		"building": {env.Change{Key: "pr-3", SHA: sha, Status: env.StatusBuilding, Message: "new commit a1b2c3d (was 9f8e7d6)"},
			"  building  pr-3           new commit a1b2c3d (was 9f8e7d6)"},
		"no message": {env.Change{Key: "pr-3", SHA: sha, Status: env.StatusMigrating},
			"  migrating pr-3           a1b2c3d"},
		"ready": {env.Change{Key: "pr-3", SHA: sha, Branch: "feature/x", Status: env.StatusReady, URL: "http://pr-3.localhost:8080", TookMS: 1400},
			"  ready     pr-3           http://pr-3.localhost:8080  (feature/x @ a1b2c3d, took 1.4 s)"},
		"ready without url": {env.Change{Key: "w", SHA: sha, Status: env.StatusReady, Message: "a1b2c3d is ready"},
			"  ready     w              a1b2c3d is ready  (a1b2c3d)"},
		"failed with tail": {env.Change{Key: "pr-3", SHA: sha, Status: env.StatusFailed, Message: "migrate: exit status 1\n--- log tail ---\nno such table"},
			"  FAILED    pr-3           migrate: exit status 1"},
		"ready, nothing else": {env.Change{Key: "w", SHA: sha, Status: env.StatusReady},
			"  ready     w              a1b2c3d"},
		"removed": {env.Change{Key: "pr-3", Status: env.StatusDeleting, Removed: true},
			"  removed   pr-3"},
		"queued": {env.Change{Key: "pr-3", Status: env.StatusQueued, Message: "queued: 2nd of 3 (maxRunning 10)"},
			"  queued    pr-3           queued: 2nd of 3 (maxRunning 10)"},
		"long key": {env.Change{Key: "feature-login-5d1a2c3b", Status: env.StatusSleeping, Message: "asleep"},
			"  sleeping  feature-login-5d1a2c3b asleep"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Line(tc.c); got != tc.want {
				t.Errorf("Line:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestEnd(t *testing.T) {
	for name, tc := range map[string]struct {
		c        env.Change
		done, ok bool
	}{
		"ready":     {env.Change{Status: env.StatusReady}, true, true},
		"failed":    {env.Change{Status: env.StatusFailed}, true, false},
		"removed":   {env.Change{Status: env.StatusDeleting, Removed: true}, true, false},
		"slept":     {env.Change{Status: env.StatusSleeping}, true, false},
		"pending":   {env.Change{Status: env.StatusPending}, false, false},
		"queued":    {env.Change{Status: env.StatusQueued}, false, false},
		"building":  {env.Change{Status: env.StatusBuilding}, false, false},
		"migrating": {env.Change{Status: env.StatusMigrating}, false, false},
		"starting":  {env.Change{Status: env.StatusStarting}, false, false},
		"deleting":  {env.Change{Status: env.StatusDeleting}, false, false},
	} {
		t.Run(name, func(t *testing.T) {
			if done, ok := End(tc.c); done != tc.done || ok != tc.ok {
				t.Errorf("End = %v, %v; want %v, %v", done, ok, tc.done, tc.ok)
			}
		})
	}
}

func TestExpect(t *testing.T) {
	for name, tc := range map[string]struct {
		action string
		status env.Status
		want   bool
	}{
		"redeploy failed":   {"redeploy", env.StatusFailed, true},
		"redeploy ready":    {"redeploy", env.StatusReady, false},
		"redeploy sleeping": {"redeploy", env.StatusSleeping, true},
		"redeploy building": {"redeploy", env.StatusBuilding, true},
		"redeploy deleting": {"redeploy", env.StatusDeleting, false},
		"redeploy queued":   {"redeploy", env.StatusQueued, true},
		"wake sleeping":     {"wake", env.StatusSleeping, true},
		"wake queued":       {"wake", env.StatusQueued, true},
		"wake ready":        {"wake", env.StatusReady, false},
		"wake failed":       {"wake", env.StatusFailed, false},
		"wake starting":     {"wake", env.StatusStarting, true},
		"wake pending":      {"wake", env.StatusPending, true},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Expect(tc.action, tc.status); got != tc.want {
				t.Errorf("Expect(%s, %s) = %v", tc.action, tc.status, got)
			}
		})
	}
}

func TestStale(t *testing.T) {
	before := env.Change{Key: "pr-1", SHA: sha, Status: env.StatusFailed, Message: "migrate of a1b2c3d failed: exit status 3\ntail"}
	for name, tc := range map[string]struct {
		c       env.Change
		started bool
		want    bool
	}{
		"the same state":          {env.Change{Key: "pr-1", SHA: sha, Status: env.StatusFailed, Message: "migrate of a1b2c3d failed: exit status 3", Reason: "Action"}, false, true},
		"the same, once started":  {env.Change{Key: "pr-1", SHA: sha, Status: env.StatusFailed, Message: "migrate of a1b2c3d failed: exit status 3"}, true, false},
		"a step":                  {env.Change{Key: "pr-1", SHA: sha, Status: env.StatusBuilding}, false, false},
		"another failure":         {env.Change{Key: "pr-1", SHA: sha, Status: env.StatusFailed, Message: "start failed"}, false, false},
		"another SHA":             {env.Change{Key: "pr-1", SHA: "b" + sha[1:], Status: env.StatusFailed, Message: "migrate of a1b2c3d failed: exit status 3"}, false, false},
		"removed":                 {env.Change{Key: "pr-1", SHA: sha, Status: env.StatusFailed, Message: "migrate of a1b2c3d failed: exit status 3", Removed: true}, false, false},
		"another key, same state": {env.Change{Key: "pr-2", SHA: sha, Status: env.StatusFailed, Message: "migrate of a1b2c3d failed: exit status 3"}, false, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Stale(tc.c, before, tc.started); got != tc.want {
				t.Errorf("Stale = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSpin(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	steps := []env.Change{
		{Key: "pr-3", Status: env.StatusBuilding, StepStartedAt: now.Add(-12 * time.Second)},
		{Key: "production", Status: env.StatusStarting, Time: now.Add(-1500 * time.Millisecond)},
	}
	for name, tc := range map[string]struct {
		steps []env.Change
		frame int
		width int
		want  string
	}{
		"none":      {nil, 0, 80, ""},
		"one":       {steps[:1], 0, 80, "⠋ pr-3 building 12 s"},
		"two":       {steps, 1, 80, "⠙ pr-3 building 12 s · production starting 1.5 s"},
		"wraps":     {steps, 10, 80, "⠋ pr-3 building 12 s · production starting 1.5 s"},
		"truncated": {steps, 0, 20, "⠋ pr-3 building 12…"},
		"no time":   {[]env.Change{{Key: "k", Status: env.StatusQueued}}, 0, 80, "⠋ k queued"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Spin(tc.steps, tc.frame, now, tc.width); got != tc.want {
				t.Errorf("Spin = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		400 * time.Millisecond: "0.4 s",
		12 * time.Second:       "12 s",
		200 * time.Second:      "3 m 20 s",
		2 * time.Hour:          "2 h",
	} {
		if got := Seconds(d); got != want {
			t.Errorf("Seconds(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestFromEnvironment(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c := FromEnvironment(env.Environment{Key: "pr-1", Kind: env.KindPullRequest, Number: 1, Branch: "b", SHA: sha, Status: env.StatusStarting, Message: "m", URL: "u", UpdatedAt: at, DeletedAt: &at})
	want := env.Change{Key: "pr-1", Kind: env.KindPullRequest, Number: 1, Branch: "b", SHA: sha, Status: env.StatusStarting, Message: "m", URL: "u", Time: at, StepStartedAt: at, Removed: true}
	if c != want {
		t.Errorf("FromEnvironment = %+v", c)
	}
}

// TestPrinter: plain output has one line per new state and no escapes;
// on a terminal a spinner line follows the lines and is cleared before
// each new one.
func TestPrinter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	changes := []env.Change{
		{Key: "pr-1", SHA: sha, Status: env.StatusBuilding, Message: "building a1b2c3d", StepStartedAt: now.Add(-2 * time.Second)},
		{Key: "pr-1", SHA: sha, Status: env.StatusBuilding, Message: "building a1b2c3d", StepStartedAt: now.Add(-2 * time.Second)},
		{Key: "pr-1", SHA: sha, Status: env.StatusReady, URL: "http://pr-1.test"},
	}
	var plain strings.Builder
	p := NewPrinter(&plain, false)
	for _, c := range changes {
		p.Change(c)
		p.Tick()
	}
	p.Stop()
	want := "  building  pr-1           building a1b2c3d\n  ready     pr-1           http://pr-1.test  (a1b2c3d)\n"
	if plain.String() != want {
		t.Errorf("plain:\n%q\nwant\n%q", plain.String(), want)
	}
	var tty strings.Builder
	p = NewPrinter(&tty, true)
	p.Now = func() time.Time { return now }
	p.Change(changes[0])
	p.Tick()
	p.Change(changes[2])
	p.Stop()
	p.Change(env.Change{Key: "pr-2", Status: env.StatusBuilding})
	p.Tick()
	want = "  building  pr-1           building a1b2c3d\n" + "⠋ pr-1 building 2.0 s" +
		"\r\033[K" + "⠙ pr-1 building 2.0 s" +
		"\r\033[K" + "  ready     pr-1           http://pr-1.test  (a1b2c3d)\n" +
		"  building  pr-2\n" // after Stop: lines, no spinner
	if tty.String() != want {
		t.Errorf("tty:\n%q\nwant\n%q", tty.String(), want)
	}
}
