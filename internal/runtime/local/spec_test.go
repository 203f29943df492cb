package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// TestReleaseSpec: a release's app spec (its commit's .previewd.yaml over
// the config) chooses build, migrate, run, health path and start timeout
// for that commit; a release without one gets the options.
func TestReleaseSpec(t *testing.T) {
	f := newFixture(t, Options{Build: "echo options > built", Migrate: "echo options > migrated"}, 3)
	ctx := context.Background()
	read := func(sha, name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(f.r.workDir("feat", sha), name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	withSpec := func(sha string, s env.AppSpec) *env.Release {
		rel := f.release(sha)
		rel.Spec = &s
		return rel
	}
	one := withSpec(f.shas[0], env.AppSpec{Build: "echo one > built", Migrate: "echo one > migrated", Run: `APP_MARK=one exec "$LOCAL_TEST_BIN"`, HealthPath: "/healthz", StartTimeout: 30 * time.Second})
	two := withSpec(f.shas[1], env.AppSpec{Build: "echo two > built", Run: `APP_MARK=two exec "$LOCAL_TEST_BIN"`, HealthPath: "/not-here", StartTimeout: 3 * time.Second})
	for _, rel := range []*env.Release{one, two, f.release(f.shas[2])} {
		if err := f.r.Prepare(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}
	if got := [3]string{read(f.shas[0], "built"), read(f.shas[1], "built"), read(f.shas[2], "built")}; got != [3]string{"one", "two", "options"} {
		t.Errorf("built = %q, want each commit's own build", got)
	}
	if err := f.r.Migrate(ctx, one); err != nil {
		t.Fatal(err)
	}
	if got := read(f.shas[0], "migrated"); got != "one" {
		t.Errorf("migrated = %q", got)
	}
	// two's spec has no migrate: nothing runs (not the options').
	if err := f.r.Migrate(ctx, two); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.r.workDir("feat", f.shas[1]), "migrated")); !os.IsNotExist(err) {
		t.Errorf("two's migrate ran the options' command: %v", err)
	}

	if err := f.r.Deploy(ctx, one); err != nil {
		t.Fatal(err)
	}
	logs, _ := f.r.Logs(ctx, "feat", 50)
	if !strings.Contains(logs, `APP_MARK=one exec`) {
		t.Errorf("one did not run its own command:\n%s", logs)
	}
	// two's health path is not served: its start fails after its own
	// timeout, and one keeps serving.
	// (Deploying one removed the other work dirs.)
	if err := f.r.Prepare(ctx, two); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := f.r.Deploy(ctx, two)
	// Its path is the one asked (on a loaded machine the app may not
	// answer at all before the timeout: that is still its path).
	if err == nil || !strings.Contains(err.Error(), "/not-here") {
		t.Fatalf("deploying two = %v, want its health path checked", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("two's start took %s; its spec gives it 3s", took)
	}
	if ok, sha, _ := f.r.Running(ctx, "feat"); !ok || sha != f.shas[0] {
		t.Errorf("running %v at %s, want one still", ok, sha)
	}
	if p := f.r.current("feat"); p == nil || p.Health != "/healthz" {
		t.Errorf("the process records its health path: %+v", p)
	}
}

// TestRehearsalSection: the rehearsal's migrate is its own log section
// (rehearse), so its output is not taken for the migration's; a failure
// there is still the migrate step's, with its output.
func TestRehearsalSection(t *testing.T) {
	f := newFixture(t, Options{Migrate: `echo "migrating $DATABASE_URL"; [ "$DATABASE_URL" != rehearsal ]`}, 1)
	ctx := context.Background()
	rel := f.release(f.shas[0])
	if err := f.r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	rr := *rel
	rr.Rehearsal = true
	rr.Vars = map[string]string{"DATABASE_URL": "rehearsal"}
	err := f.r.Migrate(ctx, &rr)
	var se *env.StepError
	if !errors.As(err, &se) || se.Step != "migrate" || !strings.Contains(se.Tail, "migrating rehearsal") {
		t.Fatalf("the rehearsal's failed migrate = %v, want the migrate step with its output", err)
	}
	rel.Vars = map[string]string{"DATABASE_URL": "real"}
	if err := f.r.Migrate(ctx, rel); err != nil {
		t.Fatal(err)
	}
	logs, _ := f.r.Logs(ctx, "feat", 50)
	rh, mg := strings.Index(logs, "==> rehearse "), strings.Index(logs, "==> migrate ")
	if rh < 0 || mg < rh || !strings.Contains(logs[rh:mg], "migrating rehearsal") || !strings.Contains(logs[mg:], "migrating real") {
		t.Errorf("want a rehearse section with the rehearsal's output, then a migrate section:\n%s", logs)
	}
}
