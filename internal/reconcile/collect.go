package reconcile

import (
	"context"
	"fmt"
	"strings"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
)

// collectDue reports whether orphans are due to be collected (Run calls it
// after a listing that worked), and if so marks them collected now.
func (r *Reconciler) collectDue() bool {
	if r.o.CollectInterval < 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.o.Now()
	if !r.lastCollect.IsZero() && now.Sub(r.lastCollect) < r.o.CollectInterval {
		return false
	}
	r.lastCollect = now
	return true
}

// Collect removes what the runtime and the database provider made for
// environments that no longer exist (left by a crash before it was
// recorded, or by an older previewd with another store): the runtime's
// part first, then the databases. Nothing is collected when the forge
// cannot be asked what is wanted. Errors are logged; the next collection
// tries again.
func (r *Reconciler) Collect(ctx context.Context) {
	if c, ok := r.o.Runtime.(runtime.Collector); ok {
		removed, err := c.Collect(ctx, r.liveKeys)
		if err != nil {
			r.log.Warn("collecting orphaned runtime objects", "err", err)
		}
		if len(removed) > 0 {
			r.log.Info("collected orphaned runtime objects", "names", strings.Join(removed, ","))
		}
	}
	c, ok := r.o.Database.(database.Collector)
	if !ok {
		return
	}
	keys, err := r.liveKeys(ctx)
	if err != nil {
		r.log.Warn("collecting orphaned databases", "err", err)
		return
	}
	removed, err := c.Collect(ctx, keys)
	if err != nil {
		r.log.Warn("collecting orphaned databases", "err", err)
	}
	if len(removed) > 0 {
		r.log.Info("collected orphaned databases", "names", strings.Join(removed, ","))
	}
}

// liveKeys are the keys that own something or are wanted: live
// environments, anything in an inventory, production, and every change the
// forge lists now. The forge's answer matters on a fresh store (a pod
// without persistence, a new leader, a lost volume): its open changes are
// not recorded until the reconciler gets to them, and their namespaces and
// databases must not be collected meanwhile. When the forge cannot be
// asked, it is an error, and nothing is collected.
func (r *Reconciler) liveKeys(ctx context.Context) (map[string]bool, error) {
	wanted, err := r.o.Source.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the forge: %w", err)
	}
	live, err := r.o.Store.Live(ctx)
	if err != nil {
		return nil, err
	}
	all, err := r.o.Store.AllItems(ctx)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{env.ProductionKey: true}
	for _, e := range live {
		keys[e.Key] = true
	}
	for k := range all {
		keys[k] = true
	}
	for _, w := range wanted {
		keys[w.Key] = true
	}
	return keys, nil
}
