package local

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestSleepAndWake: sleep stops the whole process group (the app and
// what it started in the background), forgets its process item and keeps
// the work dir, its build and the database; a second sleep does nothing;
// Deploy of the same release wakes it without building again, and the
// woken app reads the data it had.
func TestSleepAndWake(t *testing.T) {
	built := filepath.Join(t.TempDir(), "built")
	f := newFixture(t, Options{
		Build: "echo built >> '" + built + "'",
		Run:   `sleep 300 & exec "$LOCAL_TEST_BIN"`,
	}, 1)
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "feat.sqlite")
	if err := os.WriteFile(db, []byte("the data"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := func() *env.Release {
		r := f.release(f.shas[0])
		r.Vars = map[string]string{"DATABASE_PATH": db, "DATABASE_URL": "sqlite:" + db}
		return r
	}
	if err := f.r.Prepare(ctx, rel()); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Deploy(ctx, rel()); err != nil {
		t.Fatal(err)
	}
	p := f.r.current("feat")
	members, err := groupMembers(p.PID)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) < 2 {
		t.Fatalf("process group %d has %v, want the app and its background sleep", p.PID, members)
	}

	if err := f.r.Sleep(ctx, "feat"); err != nil {
		t.Fatal(err)
	}
	if left, _ := groupMembers(p.PID); len(left) != 0 {
		t.Errorf("process group %d still has %v after sleep", p.PID, left)
	}
	for _, pid := range members {
		if syscall.Kill(pid, 0) == nil && startTime(pid) != 0 {
			t.Errorf("process %d of the group runs after sleep", pid)
		}
	}
	if running, _, err := f.r.Running(ctx, "feat"); err != nil || running {
		t.Errorf("Running after sleep: %v, %v; want false", running, err)
	}
	if _, ok := f.r.Proxy("feat"); ok {
		t.Error("Proxy serves a sleeping environment")
	}
	if got := processItems(t, f.st); len(got) != 0 {
		t.Errorf("process items after sleep: %v, want none", got)
	}
	dir := f.r.workDir("feat", f.shas[0])
	for _, path := range []string{dir, dir + ".ok", filepath.Join(dir, "hello.txt")} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("after sleep: %v", err)
		}
	}
	if b, err := os.ReadFile(db); err != nil || string(b) != "the data" {
		t.Errorf("database after sleep: %q, %v", b, err)
	}
	if err := f.r.Sleep(ctx, "feat"); err != nil {
		t.Errorf("second sleep: %v", err)
	}

	t0 := time.Now()
	if err := f.r.Prepare(ctx, rel()); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Deploy(ctx, rel()); err != nil {
		t.Fatal(err)
	}
	t.Logf("wake (Prepare+Deploy of the test app): %s", time.Since(t0))
	if b, err := os.ReadFile(built); err != nil || strings.Count(string(b), "built") != 1 {
		t.Errorf("the build ran %d times (%v), want once", strings.Count(string(b), "built"), err)
	}
	if running, sha, err := f.r.Running(ctx, "feat"); err != nil || !running || sha != f.shas[0] {
		t.Errorf("Running after wake: %v %s %v", running, sha, err)
	}
	if code, body, err := do(f.srv.Client(), "GET", f.srv.URL+"/db", ""); err != nil || code != 200 || body != "the data" {
		t.Errorf("the woken app read %d %q (%v), want the data", code, body, err)
	}
	if got := processItems(t, f.st); len(got) != 1 || got[0] != strconv.Itoa(f.r.current("feat").PID) {
		t.Errorf("process items after wake: %v", got)
	}
}

// TestSleepWillNotStop: a process that does not stop fails the sleep with
// an error naming its pid, and stays recorded; the next sleep, once it
// can be stopped, stops it and forgets it.
func TestSleepWillNotStop(t *testing.T) {
	f := newFixture(t, Options{StopTimeout: 100 * time.Millisecond}, 1)
	f.deploy(f.shas[0])
	ctx := context.Background()
	p := f.r.current("feat")
	f.r.signal = func(int, syscall.Signal) {} // deaf to every signal
	err := f.r.Sleep(ctx, "feat")
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(p.PID)) {
		t.Fatalf("Sleep of a process that will not stop: %v, want an error naming %d", err, p.PID)
	}
	if !sameProcess(p.PID, p.Start) {
		t.Fatal("the process is gone although it could not be signalled")
	}
	if got := processItems(t, f.st); len(got) != 1 || got[0] != strconv.Itoa(p.PID) {
		t.Errorf("process items after a failed sleep: %v, want %d kept", got, p.PID)
	}
	f.r.signal = killGroup
	// The retried sleep stops it for real: 100 ms from SIGKILL to the
	// reaped exit is too little for a loaded machine.
	f.r.o.StopTimeout = 20 * time.Second
	if err := f.r.Sleep(ctx, "feat"); err != nil {
		t.Fatalf("retried sleep: %v", err)
	}
	if sameProcess(p.PID, p.Start) {
		t.Error("the process runs after the retried sleep")
	}
	if got := processItems(t, f.st); len(got) != 0 {
		t.Errorf("process items after the retried sleep: %v", got)
	}
}

// TestUsage: a busy process group's CPU seconds rise and its memory is
// counted; a slept environment is no longer metered.
func TestUsage(t *testing.T) {
	f := newFixture(t, Options{Run: `while :; do :; done & exec "$LOCAL_TEST_BIN"`}, 1)
	f.deploy(f.shas[0])
	ctx := context.Background()
	p := f.r.current("feat")
	first, err := f.r.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := first["feat"]
	if !ok {
		t.Fatalf("Usage: %v, want feat", first)
	}
	if want := strconv.Itoa(p.PID) + ":" + strconv.FormatUint(p.Start, 10); s.Instance != want {
		t.Errorf("Instance %q, want %q", s.Instance, want)
	}
	if s.MemoryBytes <= 0 {
		t.Errorf("MemoryBytes %d, want > 0", s.MemoryBytes)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		now, err := f.r.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if now["feat"].CPUSeconds >= s.CPUSeconds+0.1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU seconds of a busy group: %v then %v, want rising", s.CPUSeconds, now["feat"].CPUSeconds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := f.r.Sleep(ctx, "feat"); err != nil {
		t.Fatal(err)
	}
	after, err := f.r.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := after["feat"]; ok {
		t.Errorf("Usage after sleep: %v, want no feat", after)
	}
}

func TestParseStat(t *testing.T) {
	tests := map[string]struct {
		line string
		want procStat
		ok   bool
	}{
		"plain": {
			line: "42 (app) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 7 3 20 0 1 0 98765 1000000 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
			want: procStat{pgrp: 42, state: 'S', ticks: 210, start: 98765, rss: 2048}, ok: true,
		},
		"a name with spaces and parentheses": {
			line: "7 (a (b) c) R 1 9 9 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 3 0",
			want: procStat{pgrp: 9, state: 'R', ticks: 3, start: 5, rss: 3}, ok: true,
		},
		"negative child times count as none": {
			line: "7 (x) Z 1 9 9 0 -1 0 0 0 0 0 1 2 -1 -1 20 0 1 0 5 0 0 0",
			want: procStat{pgrp: 9, state: 'Z', ticks: 3, start: 5}, ok: true,
		},
		"cut short":   {line: "7 (x) S 1 9 9 0 -1 0 0 0 0 0 1 2", ok: false},
		"no name":     {line: "7 x S 1 9 9", ok: false},
		"not numbers": {line: "7 (x) S 1 nine 9 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 3 0", ok: false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := parseStat([]byte(tt.line))
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("parseStat = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
