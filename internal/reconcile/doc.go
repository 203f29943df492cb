// Package reconcile turns what the forge says should exist into running
// environments. Events (poll, webhook, API, a process exit) only enqueue an
// environment key; a worker then gathers desired and observed state,
// decides with a pure function (Decide) and acts idempotently, recording
// everything an environment owns in its inventory before or as it is
// created, so teardown works from the inventory after any crash.
package reconcile
