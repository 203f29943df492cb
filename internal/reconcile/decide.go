package reconcile

import (
	"fmt"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// Action is what one reconcile of a key does.
type Action int

// The actions, in the order a key usually sees them.
const (
	// Nothing: the environment is as it should be, or cannot change until
	// its input does (see Plan.Terminal).
	Nothing Action = iota
	// Wait: look again after Plan.RequeueAfter (a restart backoff).
	Wait
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
	return [...]string{"nothing", "wait", "hold", "deploy", "restart", "give-up", "teardown"}[a]
}

// Reasons a plan gives for its action (logged, and compared by tests).
const (
	// Nothing
	ReasonUpToDate        = "UpToDate"        // ready and running at the desired SHA
	ReasonNotListed       = "NotListed"       // the forge has not answered since start, nothing deployed to keep
	ReasonServingDeployed = "ServingDeployed" // the forge has not answered since start: keep what was deployed
	ReasonFailedSHA       = "FailedSHA"       // this SHA failed; wait for a new commit or a redeploy
	ReasonProtected       = "Protected"       // production is never torn down
	ReasonGone            = "Gone"            // nothing exists and nothing is wanted
	ReasonHeldAlready     = "HeldAlready"     // held, and already recorded so
	ReasonDownAlready     = "DownAlready"     // put down on request, and removed
	// Wait
	ReasonBackoff = "RestartBackoff"
	// Hold
	ReasonHold = "Hold"
	// Deploy
	ReasonNew         = "New"
	ReasonNewCommit   = "NewCommit"
	ReasonRedeploy    = "RedeployRequested"
	ReasonRetry       = "RetryTransient"
	ReasonInterrupted = "Interrupted"
	// Restart
	ReasonExited = "ProcessExited"
	// GiveUp
	ReasonCrashLoop = "CrashLoop"
	// Teardown
	ReasonChangeGone = "ChangeGone"
	ReasonLeftovers  = "Leftovers"
	ReasonDown       = "DownRequested"
)

// Observed is everything Decide looks at, gathered for one key in one
// place (Reconciler.gather) and not changed afterwards.
type Observed struct {
	Key string
	// Desired is what the forge wants; nil when the key should not exist
	// (or the forge has not said yet, see Listed).
	Desired *env.Source
	// Listed is true once the forge has answered a listing (or a read of
	// this key), so that a missing Desired really means "gone" and not
	// "not asked yet".
	Listed bool
	// Record is the stored environment; nil if there never was one.
	Record *store.Record
	// Items is the environment's inventory.
	Items []env.Item
	// Running and RunningSHA are what the runtime observes.
	Running    bool
	RunningSHA string
	// Redeploy is true when someone asked for the SHA to be tried again.
	Redeploy bool
	// ExitedAt is when the runtime last reported that the environment's
	// process exited on its own; zero when it has not since start.
	ExitedAt time.Time
	// Down is true when someone put the environment down (/preview down,
	// the API): it is removed and not deployed until brought up again.
	Down bool
	// MaxRestarts is how many crashes in a row are restarted.
	MaxRestarts int
	// Now is when the state was gathered; restarts older than
	// RestartWindow do not count towards MaxRestarts.
	Now time.Time
}

// live reports whether the stored environment exists and is not removed.
func (o Observed) live() bool { return o.Record != nil && o.Record.DeletedAt == nil }

// Plan is what Decide wants done for one key, and why.
type Plan struct {
	Action Action
	// Source is what Hold, Deploy, Restart, GiveUp and Teardown act on:
	// the desired source, the one last deployed (before the forge has
	// answered), or the stored identity (teardown).
	Source env.Source
	// Reason is one of the Reason constants; Message says it for people.
	Reason  string
	Message string
	// RequeueAfter, for Wait, is when to look again.
	RequeueAfter time.Duration
	// Terminal says nothing will change until the input does (a new
	// commit, a redeploy): the key is not looked at again until then.
	Terminal bool
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

// RestartBackoff is how long after a crash (or a failed restart) the n+1th
// restart waits: 100ms doubling with every recent restart, at most 30s.
func RestartBackoff(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 0; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// Decide returns the plan for one key. It is a pure function of o.
func Decide(o Observed) Plan {
	rec := o.Record
	if o.Desired == nil {
		return decideGone(o)
	}
	d := *o.Desired
	if o.Down && o.Key != env.ProductionKey && !d.Production() {
		return decideDown(o)
	}
	short := env.ShortSHA(d.SHA)
	if d.Hold != "" {
		if o.live() && rec.Status == env.StatusPending && rec.Message == d.Hold {
			return Plan{Action: Nothing, Source: d, Reason: ReasonHeldAlready, Message: d.Hold}
		}
		return Plan{Action: Hold, Source: d, Reason: ReasonHold, Message: d.Hold}
	}
	if !o.live() {
		return Plan{Action: Deploy, Source: d, Reason: ReasonNew, Message: "new environment at " + short}
	}
	if rec.SHA != d.SHA {
		return Plan{Action: Deploy, Source: d, Reason: ReasonNewCommit, Message: fmt.Sprintf("new commit %s (was %s)", short, env.ShortSHA(rec.SHA))}
	}
	switch rec.Status {
	case env.StatusFailed:
		if rec.FailedSHA != d.SHA {
			return Plan{Action: Deploy, Source: d, Reason: ReasonRetry, Message: "trying " + short + " again after an error"}
		}
		if o.Redeploy {
			return Plan{Action: Deploy, Source: d, Reason: ReasonRedeploy, Message: "redeploying " + short + " on request"}
		}
		return Plan{Action: Nothing, Source: d, Reason: ReasonFailedSHA, Message: short + " failed; waiting for a new commit or a redeploy", Terminal: true}
	case env.StatusReady:
		if o.Running && o.RunningSHA == d.SHA {
			return Plan{Action: Nothing, Source: d, Reason: ReasonUpToDate, Message: short + " is ready"}
		}
		n := RecentRestarts(*rec, o.Now)
		if n >= o.MaxRestarts {
			return Plan{Action: GiveUp, Source: d, Reason: ReasonCrashLoop, Message: fmt.Sprintf("%s keeps exiting: gave up after %d restarts", short, n), Terminal: true}
		}
		if wait := restartWait(o, n); wait > 0 {
			return Plan{Action: Wait, Source: d, Reason: ReasonBackoff, Message: fmt.Sprintf("restarting %s in %s", short, wait.Round(time.Millisecond)), RequeueAfter: wait}
		}
		return Plan{Action: Restart, Source: d, Reason: ReasonExited, Message: fmt.Sprintf("process exited; restart %d of %d", n+1, o.MaxRestarts)}
	}
	// Interrupted part-way (pending, building, migrating, starting,
	// deleting): do it again; every step is idempotent.
	return Plan{Action: Deploy, Source: d, Reason: ReasonInterrupted, Message: fmt.Sprintf("%s was %s; going on", short, rec.Status)}
}

// decideGone decides for a key the forge does not (or not yet) list.
func decideGone(o Observed) Plan {
	rec := o.Record
	if !o.Listed {
		// The forge has not answered since previewd started (it may be
		// unreachable): keep what was deployed running, restarting it if
		// it is gone, and decide nothing else until a listing works.
		if o.live() && rec.Deployed != nil {
			return decideFallback(o)
		}
		return Plan{Action: Nothing, Source: env.Source{Key: o.Key}, Reason: ReasonNotListed, Message: "the forge has not answered yet"}
	}
	src := env.Source{Key: o.Key}
	if rec != nil {
		src = env.Source{Key: o.Key, Kind: rec.Kind, Number: rec.Number, Branch: rec.Branch, SHA: rec.SHA}
	}
	if o.Key == env.ProductionKey || src.Production() {
		// Production is never torn down by reconciliation, even if its
		// branch disappears.
		return Plan{Action: Nothing, Source: src, Reason: ReasonProtected, Message: "production is never torn down"}
	}
	switch {
	case o.live():
		return Plan{Action: Teardown, Source: src, Reason: ReasonChangeGone, Message: "the change is gone"}
	case len(o.Items) > 0:
		return Plan{Action: Teardown, Source: src, Reason: ReasonLeftovers, Message: fmt.Sprintf("%d items left to remove", len(o.Items))}
	}
	return Plan{Action: Nothing, Source: src, Reason: ReasonGone, Message: "nothing to remove"}
}

// decideDown decides for a key that is wanted but put down: remove what
// exists, then nothing until it is brought up. Production is never down
// (Decide does not ask).
func decideDown(o Observed) Plan {
	src := *o.Desired
	if o.Record != nil {
		src = env.Source{Key: o.Key, Kind: o.Record.Kind, Number: o.Record.Number, Branch: o.Record.Branch, SHA: o.Record.SHA}
	}
	switch {
	case o.live():
		return Plan{Action: Teardown, Source: src, Reason: ReasonDown, Message: "put down on request"}
	case len(o.Items) > 0:
		return Plan{Action: Teardown, Source: src, Reason: ReasonDown, Message: fmt.Sprintf("put down on request; %d items left to remove", len(o.Items))}
	}
	return Plan{Action: Nothing, Source: src, Reason: ReasonDownAlready, Message: "down on request; waiting for up", Terminal: true}
}

// decideFallback decides as if the forge wanted what was last deployed,
// keeping only what keeps it serving: a restart, its backoff, giving up.
func decideFallback(o Observed) Plan {
	d := *o.Record.Deployed
	as := o
	as.Desired, as.Listed, as.Redeploy = &d, true, false
	p := Decide(as)
	switch p.Action {
	case Restart, Wait, GiveUp:
		return p
	}
	return Plan{Action: Nothing, Source: d, Reason: ReasonServingDeployed, Message: "the forge has not answered since previewd started; keeping " + env.ShortSHA(d.SHA) + " as deployed"}
}

// restartWait returns how much longer the next restart must wait: the
// backoff for n recent restarts from the later of the last exit and the
// last status change (a restart, or a failed one).
func restartWait(o Observed, n int) time.Duration {
	if o.Now.IsZero() {
		return 0
	}
	since := o.Record.UpdatedAt
	if o.ExitedAt.After(since) {
		since = o.ExitedAt
	}
	return RestartBackoff(n) - o.Now.Sub(since)
}
