// Package events is the hub of environment changes: it is told every
// saved status change (it is one of the reconciler's notifiers), numbers
// each as an env.Change, keeps the last ones so a subscriber that lost
// its connection can resume after the id it saw last, and fans each new
// one out to its subscribers (the server's GET /api/v1/events streams).
//
// Telling the hub never waits for a subscriber: each has a bounded
// buffer, and one whose buffer is full is dropped (its channel closed,
// with ErrSlow), to come back with the id it saw last.
package events
