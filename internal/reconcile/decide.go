package reconcile

import (
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// Action is what one reconcile of a key does.
type Action int

// The actions, in the order a key usually sees them.
const (
	// Nothing: the environment is as it should be, or failed for this SHA
	// and waits for a change.
	Nothing Action = iota
	// Hold: the change exists but must not be deployed yet.
	Hold
	// Deploy: build, migrate and start the desired SHA.
	Deploy
	// Restart: the desired SHA is deployed but its process is gone; start
	// it again without building or migrating.
	Restart
	// GiveUp: the process keeps crashing; mark the environment failed.
	GiveUp
	// Teardown: remove everything the environment owns.
	Teardown
)

func (a Action) String() string {
	return [...]string{"nothing", "hold", "deploy", "restart", "give-up", "teardown"}[a]
}

// State is everything Decide looks at, gathered for one key.
type State struct {
	// Desired is what the forge wants; nil when the key should not exist.
	Desired *env.Source
	// Listed is true once the forge has answered a listing, so that a
	// missing key really means "gone" and not "not asked yet".
	Listed bool
	// Record is the stored environment; nil if there never was one.
	Record *store.Record
	// Items is the environment's inventory.
	Items []env.Item
	// Running and RunningSHA are what the runtime observes.
	Running    bool
	RunningSHA string
	// MaxRestarts is how many crashes in a row are restarted.
	MaxRestarts int
	// Now is when the state was gathered; restarts older than
	// RestartWindow do not count towards MaxRestarts.
	Now time.Time
}

// RestartWindow is how long a process must have run since its last
// (re)start for its next crash to count as a new one rather than part of a
// crash loop: the restart count starts again from zero.
const RestartWindow = 10 * time.Minute

// RecentRestarts returns the restarts of rec that count at now towards
// MaxRestarts: none once the last (re)start is older than RestartWindow.
// A zero now counts them all.
func RecentRestarts(rec store.Record, now time.Time) int {
	if !now.IsZero() && now.Sub(rec.UpdatedAt) > RestartWindow {
		return 0
	}
	return rec.Restarts
}

// Decide returns the action for one key. It is a pure function.
func Decide(s State) Action {
	live := s.Record != nil && s.Record.DeletedAt == nil
	if s.Desired == nil {
		switch {
		case !s.Listed:
			return Nothing
		case s.Record != nil && s.Record.Production():
			// Production is never torn down by reconciliation, even if
			// its branch disappears.
			return Nothing
		case live || len(s.Items) > 0:
			return Teardown
		}
		return Nothing
	}
	d := s.Desired
	if d.Hold != "" {
		if live && s.Record.Status == env.StatusPending && s.Record.Message == d.Hold {
			return Nothing
		}
		return Hold
	}
	if !live {
		return Deploy
	}
	r := s.Record
	if r.SHA != d.SHA {
		return Deploy
	}
	switch r.Status {
	case env.StatusFailed:
		if r.FailedSHA == d.SHA {
			return Nothing
		}
		return Deploy
	case env.StatusReady:
		if s.Running && s.RunningSHA == d.SHA {
			return Nothing
		}
		if RecentRestarts(*r, s.Now) >= s.MaxRestarts {
			return GiveUp
		}
		return Restart
	}
	// Interrupted part-way (pending, building, migrating, starting,
	// deleting): do it again; every step is idempotent.
	return Deploy
}
