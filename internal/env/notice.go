package env

import "time"

// Notice is one change of an environment worth telling people about: the
// reconciler makes it, notifiers (the PR comment, deployments, metrics)
// consume it.
type Notice struct {
	Env    Environment
	Source Source
	// Took is the time since this rollout or teardown began.
	Took time.Duration
	// Tail is the end of the failed step's output.
	Tail string
	// Removed and Left list, on teardown, what was removed and what could
	// not be (and will be retried).
	Removed, Left []string
	// Reason is the event's reason (reconcile's Reason constants), so a
	// notifier can tell an expiry or a sleep from other changes.
	Reason string
	// Expired is true on the removal of a preview whose TTL ran out: it
	// comes back with a push or /preview up.
	Expired bool
	// Warning, when set, is the TTL warning: when the preview will be
	// removed unless there is activity before.
	Warning *time.Time
}
