package reconcile

import (
	"context"
	"errors"
	"time"
)

// The lifecycle's entry points (config lifecycle): activity, sleep, wake,
// extend and keep. Each only records a request or a mark and enqueues the
// key; Decide does the rest.

// ErrProduction refuses a lifecycle action on production, which never
// sleeps, expires or queues.
var ErrProduction = errors.New("production never sleeps or expires")

// Touch records activity on key now (a request through previewd's
// proxy). It is cheap enough to call on every request: the time is kept
// in memory and written to the store by the next reconcile of key or the
// periodic flush.
func (r *Reconciler) Touch(key string) { panic("not yet") }

// Wake asks for a sleeping (or queued) key to run again, and counts as
// activity. A request through the proxy, the API, the CLI and /preview
// wake call it.
func (r *Reconciler) Wake(key string) { panic("not yet") }

// Sleep asks for key to be put to sleep now, on actor's request.
func (r *Reconciler) Sleep(ctx context.Context, key, actor string) error { panic("not yet") }

// Extend keeps key from expiring for at least d from now, and returns
// when it now expires (zero when it never does).
func (r *Reconciler) Extend(ctx context.Context, key string, d time.Duration) (time.Time, error) {
	panic("not yet")
}

// Keep pins key (on) so that it never sleeps or expires, or unpins it.
func (r *Reconciler) Keep(ctx context.Context, key string, on bool) error { panic("not yet") }
