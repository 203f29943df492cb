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
	// Queue: the preview waits for a running slot (lifecycle.maxRunning).
	Queue
	// Sleep: stop what runs, keep data and build (lifecycle.sleepAfter,
	// or on request).
	Sleep
	// Wake: start a sleeping preview's deployed SHA again, without
	// building or migrating.
	Wake
	// Expire: remove a preview past lifecycle.ttl, as if its change had
	// closed, and keep it down until a new commit or /preview up.
	Expire
	// Warn: say on the PR when the TTL will remove the preview.
	Warn
	// ResetDB: give the preview a fresh database (template or seed, then
	// its migrations) while the old one serves, then swap.
	ResetDB
	// Skip: say why the change's commit is not deployed (its diff
	// touches none of the path filters), leaving what runs as it is.
	Skip
)

func (a Action) String() string {
	return [...]string{"nothing", "wait", "hold", "deploy", "restart", "give-up", "teardown", "queue", "sleep", "wake", "expire", "warn", "reset-db", "skip"}[a]
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
	ReasonExpiredAlready  = "ExpiredAlready"  // removed by the TTL; waits for a commit or up
	ReasonQueuedAlready   = "QueuedAlready"   // queued, and already recorded at this place
	ReasonAsleep          = "Asleep"          // sleeping until a request or a wake
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
	ReasonRevived     = "Revived"  // a new commit after the TTL removed it
	ReasonDequeued    = "Dequeued" // its turn in the queue came
	// ResetDB
	ReasonResetRequested = "ResetRequested"
	// Restart
	ReasonExited = "ProcessExited"
	// GiveUp
	ReasonCrashLoop = "CrashLoop"
	// Teardown
	ReasonChangeGone = "ChangeGone"
	ReasonLeftovers  = "Leftovers"
	ReasonDown       = "DownRequested"
	// Queue
	ReasonCapReached = "CapReached"
	// Sleep
	ReasonIdle            = "Idle"
	ReasonSleepRequested  = "SleepRequested"
	ReasonEvicted         = "Evicted"
	ReasonSleepUnfinished = "SleepUnfinished" // stored asleep, but its process still runs (a crash between the two)
	// Wake
	ReasonWakeRequested = "WakeRequested"
	// Expire
	ReasonExpired = "Expired"
	// Warn
	ReasonExpiryWarning = "ExpiryWarning"
	// Skip
	ReasonNoPathChanges = "NoPathChanges"
	// Nothing, after a Skip
	ReasonSkippedAlready = "SkippedAlready"
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
	// ResetDB is true when someone asked for a fresh database.
	ResetDB bool
	// ExitedAt is when the runtime last reported that the environment's
	// process exited on its own; zero when it has not since start.
	ExitedAt time.Time
	// Down is true when someone put the environment down (/preview down,
	// the API): it is removed and not deployed until brought up again.
	Down bool
	// MaxRestarts is how many crashes in a row are restarted.
	MaxRestarts int
	// DownReason and DownSHA say why it is down (store.DownRequested or
	// store.DownExpired) and, for an expiry, at which commit.
	DownReason, DownSHA string
	// Life is the lifecycle policy.
	Life env.Lifecycle
	// Activity is the last push, proxied request or command; zero when
	// none is known.
	Activity time.Time
	// SleepAsked, when set, says who or what asked for the preview to
	// sleep now (a person, or an eviction).
	SleepAsked string
	// Evicted says the sleep asked makes room for another preview.
	Evicted bool
	// Wake is true when someone asked for it to run again.
	Wake bool
	// Slot, when not nil, is the cap's refusal: the key may not take a
	// running slot now. Nil when there is no cap, or it may.
	Slot *Admission
	// Now is when the state was gathered; restarts older than
	// RestartWindow do not count towards MaxRestarts.
	Now time.Time
	// Tier is the database tier asked for and the one made (tier.go).
	Tier Tiers
	// Paths are the change's path filters (config or its repository's
	// file) and Touched the files it changes: since its merge base with
	// its base, or since the commit deployed when one runs. Touched is
	// nil when not known (no filters, production, no base, or already
	// deployed at this SHA), and then nothing is filtered.
	Paths   []string
	Touched []string
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
	return lifecycle(o, decide(o))
}

// decide is Decide before the lifecycle's deadlines (sleep, expiry,
// warning), which only apply to what it leaves as it is.
func decide(o Observed) Plan {
	rec := o.Record
	if o.Desired == nil {
		return decideGone(o)
	}
	d := *o.Desired
	revived := false
	if o.Down && o.Key != env.ProductionKey && !d.Production() {
		if o.DownReason != store.DownExpired {
			return decideDown(o)
		}
		if d.SHA == o.DownSHA {
			return decideExpired(o)
		}
		// A new commit brings an expired preview back.
		revived = true
	}
	short := env.ShortSHA(d.SHA)
	if d.Hold != "" {
		if o.live() && rec.Status == env.StatusPending && rec.Message == d.Hold {
			return Plan{Action: Nothing, Source: d, Reason: ReasonHeldAlready, Message: d.Hold}
		}
		return Plan{Action: Hold, Source: d, Reason: ReasonHold, Message: d.Hold}
	}
	if p, ok := pathFilter(o); ok {
		return p
	}
	if !o.live() {
		if o.Slot != nil {
			return queue(o)
		}
		if revived {
			return Plan{Action: Deploy, Source: d, Reason: ReasonRevived, Message: "new commit " + short + " after the preview expired"}
		}
		return Plan{Action: Deploy, Source: d, Reason: ReasonNew, Message: "new environment at " + short}
	}
	if rec.SHA != d.SHA {
		if o.Slot != nil {
			return queue(o)
		}
		return Plan{Action: Deploy, Source: d, Reason: ReasonNewCommit, Message: fmt.Sprintf("new commit %s (was %s)", short, env.ShortSHA(rec.SHA))}
	}
	if p, ok := tierChange(o); ok {
		return p
	}
	if o.ResetDB && !d.Production() {
		switch {
		case rec.Status == env.StatusReady && o.Running && o.RunningSHA == d.SHA,
			rec.Status == env.StatusSleeping, rec.Status == env.StatusFailed:
			return Plan{Action: ResetDB, Source: d, Reason: ReasonResetRequested, Message: "resetting the database on request"}
		}
		// Anything else (a rollout under way, a crash) first; the
		// request waits.
	}
	switch rec.Status {
	case env.StatusSleeping:
		if !o.Wake && !o.Redeploy && o.Running {
			// Sleeping is stored before the process stops: previewd
			// killed in between leaves it running. Finish the sleep.
			return Plan{Action: Sleep, Source: d, Reason: ReasonSleepUnfinished, Message: rec.Message}
		}
		if !o.Wake && !o.Redeploy {
			return Plan{Action: Nothing, Source: d, Reason: ReasonAsleep, Message: rec.Message, Terminal: true}
		}
		if o.Slot != nil {
			return queue(o)
		}
		return wakePlan(o, ReasonWakeRequested)
	case env.StatusQueued:
		if o.Slot != nil {
			return queue(o)
		}
		if rec.Deployed != nil && rec.Deployed.SHA == d.SHA {
			return wakePlan(o, ReasonDequeued)
		}
		return Plan{Action: Deploy, Source: d, Reason: ReasonDequeued, Message: "its turn came: deploying " + short}
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

// queue is the plan of a key the cap refuses a slot: wait in the queue,
// at its place (recorded once per place).
func queue(o Observed) Plan {
	d := *o.Desired
	msg := o.Slot.Message(o.Life.MaxRunning)
	if o.live() && o.Record.Status == env.StatusQueued && o.Record.Message == msg && o.Record.SHA == d.SHA {
		return Plan{Action: Nothing, Source: d, Reason: ReasonQueuedAlready, Message: msg, Terminal: true}
	}
	return Plan{Action: Queue, Source: d, Reason: ReasonCapReached, Message: msg}
}

// wakePlan starts the deployed SHA again.
func wakePlan(o Observed, reason string) Plan {
	return Plan{Action: Wake, Source: *o.Desired, Reason: reason, Message: "waking " + env.ShortSHA(o.Desired.SHA)}
}

// decideExpired decides for a key the TTL removed, while the forge still
// lists the commit it was removed at.
func decideExpired(o Observed) Plan {
	p := decideDown(o)
	if p.Action == Nothing {
		p.Reason = ReasonExpiredAlready
		p.Message = "removed after " + env.HumanDuration(o.Life.TTL) + " without activity; a new commit or /preview up brings it back"
	}
	return p
}

// Expiry returns when the TTL removes the preview unless there is activity
// first, or zero when it never does (no ttl, kept, production).
func Expiry(o Observed) time.Time {
	if o.Life.TTL <= 0 || o.Record == nil || o.production() || o.kept() {
		return time.Time{}
	}
	since := o.Activity
	if since.IsZero() {
		since = o.Record.CreatedAt
	}
	exp := since.Add(o.Life.TTL)
	if o.Record.ExtendUntil.After(exp) {
		exp = o.Record.ExtendUntil
	}
	return exp.Truncate(time.Millisecond)
}

func (o Observed) production() bool {
	return o.Key == env.ProductionKey || (o.Desired != nil && o.Desired.Production()) || (o.Record != nil && o.Record.Kind == env.KindProduction)
}

// kept reports whether the label or /preview keep pins the preview.
func (o Observed) kept() bool {
	return (o.Desired != nil && o.Desired.Keep) || (o.Record != nil && o.Record.Kept)
}

// lifecycle adds the lifecycle's deadlines to a plan that leaves a live
// preview as it is: expire it past the TTL, put it to sleep when idle (or
// asked), warn before the TTL; otherwise look again at the next deadline.
// Production is never touched.
func lifecycle(o Observed, p Plan) Plan {
	if p.Action != Nothing || o.Desired == nil || !o.live() || o.production() {
		return p
	}
	l, rec := o.Life, o.Record
	src := *o.Desired
	exp := Expiry(o)
	if !exp.IsZero() && !o.Now.Before(exp) {
		return Plan{Action: Expire, Source: src, Reason: ReasonExpired, Message: "removed after " + env.HumanDuration(l.TTL) + " without activity"}
	}
	awake := rec.Status == env.StatusReady && o.Running
	var sleepAt time.Time
	if awake {
		if o.SleepAsked != "" {
			reason := ReasonSleepRequested
			if o.Evicted {
				reason = ReasonEvicted
			}
			return Plan{Action: Sleep, Source: src, Reason: reason, Message: o.SleepAsked}
		}
		if l.SleepAfter > 0 && !o.kept() && !o.Activity.IsZero() {
			sleepAt = o.Activity.Add(l.SleepAfter)
			if !o.Now.Before(sleepAt) {
				return Plan{Action: Sleep, Source: src, Reason: ReasonIdle, Message: "asleep after " + env.HumanDuration(l.SleepAfter) + " without activity; the next request wakes it"}
			}
		}
	}
	var warnAt time.Time
	if !exp.IsZero() && l.WarnBefore > 0 && !warned(rec.WarnedFor, exp) {
		warnAt = exp.Add(-l.WarnBefore)
		if !o.Now.Before(warnAt) {
			return Plan{Action: Warn, Source: src, Reason: ReasonExpiryWarning, Message: "removed at " + exp.UTC().Format("2006-01-02 15:04 MST") + " unless there is activity"}
		}
	}
	next := time.Time{}
	for _, t := range []time.Time{exp, sleepAt, warnAt} {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if next.IsZero() {
		return p
	}
	wait := max(next.Sub(o.Now), 10*time.Millisecond)
	if p.RequeueAfter == 0 || wait < p.RequeueAfter {
		p.RequeueAfter = wait
	}
	p.Terminal = false
	return p
}

// warned reports whether the warning already sent was about expiry exp
// (to the second: the times went through the store).
func warned(warnedFor, exp time.Time) bool {
	d := warnedFor.Sub(exp)
	return !warnedFor.IsZero() && d < time.Second && d > -time.Second
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
