// Package reconcile turns what the forge says should exist into running
// environments. Events (poll, webhook, API, a process exit) only enqueue an
// environment key, or record a request for it (Redeploy, Exited); a worker
// then reconciles the key in three steps:
//
//   - gather builds one Observed value: the desired source, whether the
//     forge has answered, the stored record and inventory, what the runtime
//     runs, the pending requests and the time;
//   - Decide, a pure function, returns a Plan: the action, a reason
//     constant, a message, and whether it waits (RequeueAfter) or is
//     terminal (nothing changes until the input does);
//   - act executes the plan idempotently, recording everything an
//     environment owns in its inventory before or as it is created, so
//     teardown works from the inventory after any crash, and saving the
//     status it ends in, with an event, in a deferred call.
//
// Reconcile returns a Result and an error, as controller-runtime's do: an
// error is retried with backoff unless it is Terminal; a settled
// environment is looked at again after a resync period with jitter. Run
// also lists the source periodically and collects, after listings that
// worked, what the runtime and the database provider made for keys that
// no longer exist.
package reconcile
