package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// Down puts key down on actor's request: the mark is stored (so it holds
// across restarts) and the reconcile it enqueues removes the environment
// as a close would. It is not deployed again, whatever the forge lists,
// until Up. Production is refused.
func (r *Reconciler) Down(ctx context.Context, key, actor string) error {
	if err := env.CheckKey(key); err != nil {
		return err
	}
	if key == env.ProductionKey {
		return errors.New("production cannot be put down")
	}
	rec, err := r.o.Store.GetRecord(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	case rec.Kind == env.KindProduction:
		return errors.New("production cannot be put down")
	}
	r.mu.Lock()
	d, ok := r.desired[key]
	r.mu.Unlock()
	if ok && d.Production() {
		return errors.New("production cannot be put down")
	}
	if err := r.o.Store.SetDown(ctx, key, actor); err != nil {
		return fmt.Errorf("putting %s down: %w", key, err)
	}
	r.queue.Add(key)
	return nil
}

// Up brings a key put down back: the mark goes and the reconcile it
// enqueues deploys the change again if the forge still wants it. It
// reports whether key was down.
func (r *Reconciler) Up(ctx context.Context, key string) (bool, error) {
	if err := env.CheckKey(key); err != nil {
		return false, err
	}
	was, err := r.o.Store.ClearDown(ctx, key)
	if err != nil {
		return false, fmt.Errorf("bringing %s up: %w", key, err)
	}
	r.Enqueue(key)
	return was, nil
}
