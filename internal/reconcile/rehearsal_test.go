package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/inventory"
)

// rehearsingDatabase is fakeDatabase that rehearses: it runs migrate on a
// rehearsal "database" and returns the report the test gives, recording
// what migrate saw.
type rehearsingDatabase struct {
	*fakeDatabase
	report env.Rehearsal
	err    error
	// sawURL is the DATABASE_URL migrate was given in the rehearsal.
	sawURL string
	// itemsDuring is the inventory while the rehearsal ran.
	itemsDuring func() []env.Item
	during      []env.Item
}

var _ database.Rehearser = (*rehearsingDatabase)(nil)

func (d *rehearsingDatabase) RehearsalItems(t database.Target) []env.Item {
	return []env.Item{{Kind: env.ItemDatabase, Name: t.Key + "$rehearsal"}}
}

func (d *rehearsingDatabase) Rehearse(ctx context.Context, t database.Target, o database.RehearseOptions, migrate func(context.Context, database.Conn) error) (env.Rehearsal, error) {
	if d.err != nil {
		return env.Rehearsal{}, d.err
	}
	d.during = d.itemsDuring()
	url := "postgres://rehearsal/" + t.Key
	merr := migrate(ctx, database.Conn{Vars: map[string]string{"DATABASE_URL": url}})
	d.sawURL = url
	rep := d.report
	if merr != nil {
		rep.Error = merr.Error()
	}
	return rep, nil
}

func rehearsalFixture(t *testing.T, rules ...env.FailOn) (*fixture, *rehearsingDatabase) {
	var rd *rehearsingDatabase
	f := newFixture(t, func(o *Options) {
		rd = &rehearsingDatabase{fakeDatabase: o.Database.(*fakeDatabase)}
		o.Database = rd
		o.Rehearsal = Rehearsal{Enabled: true, FailOn: rules}
	})
	rd.itemsDuring = func() []env.Item { return f.items("feat") }
	return f, rd
}

// TestActRehearsal: the rehearsal runs before the preview's own
// migration, on its own database, which is in the inventory while it runs
// and gone after; the report is stored with the failOn rules it hits and
// is in the history.
func TestActRehearsal(t *testing.T) {
	f, rd := rehearsalFixture(t, env.FailOn{Kind: "drop"})
	rd.report = env.Rehearsal{Engine: "postgres", StatementCount: 1, Seconds: 0.2,
		Findings: []env.RehearsalFinding{{Kind: env.FindingDropColumn, Table: "users", Column: "legacy_id"}}}
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady {
		t.Fatalf("status %s: %s", r.Status, r.Message)
	}
	if rd.sawURL != "postgres://rehearsal/feat" {
		t.Errorf("the rehearsal's migrate saw %q", rd.sawURL)
	}
	rehearsal := inventory.ID{Kind: env.ItemDatabase, Name: "feat$rehearsal"}
	if !inventory.Has(rd.during, rehearsal) {
		t.Errorf("the rehearsal database was not in the inventory while it ran: %v", rd.during)
	}
	if inventory.Has(f.items("feat"), rehearsal) {
		t.Errorf("the rehearsal database is still in the inventory: %v", f.items("feat"))
	}
	rep, err := f.st.Rehearsal(f.ctx, "feat")
	if err != nil {
		t.Fatal(err)
	}
	if rep.SHA != shaA || strings.Join(rep.Failing, ",") != "drop" {
		t.Errorf("stored report %+v", rep)
	}
	var reasons []string
	for _, ev := range f.events("feat") {
		reasons = append([]string{ev.Reason}, reasons...)
	}
	if got := strings.Join(reasons, ","); got != "Building,Rehearsing,Rehearsed,Migrating,Starting,Ready" {
		t.Errorf("events = %s", got)
	}
}

// TestActRehearsalFailureStopsTheRollout: a migration that fails in the
// rehearsal fails the preview before its own migration runs, with the
// error in the status; the SHA is not tried again.
func TestActRehearsalFailureStopsTheRollout(t *testing.T) {
	f, _ := rehearsalFixture(t)
	f.rt.migrateErr = errors.New(`ERROR: column "x" does not exist`)
	f.want(branch("feat", shaA))
	if _, err := f.reconcile("feat"); err == nil {
		t.Fatal("no error")
	}
	r := f.record("feat")
	if r.Status != env.StatusFailed || r.FailedSHA != shaA || !strings.Contains(r.Message, "migration rehearsal of ") || !strings.Contains(r.Message, `column "x" does not exist`) {
		t.Fatalf("record %s %q failed %q", r.Status, r.Message, r.FailedSHA)
	}
	for _, ev := range f.events("feat") {
		if ev.Reason == ReasonMigrating {
			t.Errorf("the preview's own migration ran after the rehearsal failed")
		}
	}
	rep, err := f.st.Rehearsal(f.ctx, "feat")
	if err != nil || strings.Join(rep.Failing, ",") != "failed" {
		t.Errorf("report %+v, %v", rep, err)
	}
}

// TestActRehearsalSkipped: a rehearsal that cannot be made (no CREATEDB,
// say) is reported as skipped and the rollout goes on.
func TestActRehearsalSkipped(t *testing.T) {
	f, rd := rehearsalFixture(t)
	rd.err = errors.New("permission denied to create database")
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady {
		t.Fatalf("status %s: %s", r.Status, r.Message)
	}
	rep, err := f.st.Rehearsal(f.ctx, "feat")
	if err != nil || !strings.Contains(rep.Skipped, "permission denied") || rep.Judge(nil) != nil {
		t.Errorf("report %+v, %v", rep, err)
	}
}

// TestActNotRehearsable: a runtime that cannot point the migration at the
// rehearsal's copy (env.ErrNotRehearsable) gets the rehearsal reported as
// not made, and the rollout goes on with the real migration.
func TestActNotRehearsable(t *testing.T) {
	f, _ := rehearsalFixture(t)
	f.rt.rehearseErr = &env.StepError{Step: "migrate", Err: fmt.Errorf("%w: the migrate job reads nothing from the environment's Secret", env.ErrNotRehearsable)}
	f.want(branch("feat", shaA))
	f.mustReconcile("feat")
	if r := f.record("feat"); r.Status != env.StatusReady {
		t.Fatalf("status %s: %s", r.Status, r.Message)
	}
	rep, err := f.st.Rehearsal(f.ctx, "feat")
	if err != nil || !strings.Contains(rep.Skipped, "reads nothing from the environment's Secret") || rep.Error != "" || rep.Judge(nil) != nil {
		t.Errorf("report %+v, %v", rep, err)
	}
	migrated := false
	for _, ev := range f.events("feat") {
		migrated = migrated || ev.Reason == ReasonMigrating
	}
	if !migrated {
		t.Error("the real migration did not run")
	}
}

// TestActNoRehearsalForProduction: production's migrations are never
// rehearsed.
func TestActNoRehearsalForProduction(t *testing.T) {
	f, _ := rehearsalFixture(t)
	f.want(env.Source{Key: env.ProductionKey, Kind: env.KindProduction, Branch: "main", SHA: shaA})
	f.mustReconcile(env.ProductionKey)
	if _, err := f.st.Rehearsal(f.ctx, env.ProductionKey); err == nil {
		t.Error("production has a rehearsal")
	}
}
