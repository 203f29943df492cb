package reconcile

import (
	"context"
	"testing"
	"time"
)

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestReconciledAfterFirstListing: Reconciled is closed only once every
// key of the first listing since start was reconciled, not at the
// listing itself (Argo CD's generator and /readyz wait for it).
func TestReconciledAfterFirstListing(t *testing.T) {
	f := newFixture(t)
	if closed(f.rec.Reconciled()) {
		t.Fatal("reconciled before any listing")
	}
	f.want(branch("a", shaA), branch("b", shaB))
	if closed(f.rec.Reconciled()) {
		t.Fatal("reconciled at the listing, before any key was")
	}
	f.rec.attempted("a")
	if closed(f.rec.Reconciled()) {
		t.Fatal("reconciled with b still to do")
	}
	f.rec.attempted("other") // not of the first listing: no effect
	f.rec.attempted("b")
	if !closed(f.rec.Reconciled()) {
		t.Fatal("not reconciled after every key of the first listing")
	}
	f.want(branch("c", shaA)) // later listings change nothing
	f.rec.attempted("c")
}

// TestReconciledWorkers: the workers mark keys as attempted.
func TestReconciledWorkers(t *testing.T) {
	f := newFixture(t)
	f.src.set(branch("a", shaA), branch("b", shaB))
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() { f.rec.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-f.rec.Reconciled():
	case <-time.After(20 * time.Second):
		t.Fatal("never reconciled")
	}
	for _, k := range []string{"a", "b"} {
		if r := f.record(k); r.SHA == "" {
			t.Errorf("%s has no record once reconciled", k)
		}
	}
}

// TestReconciledEmptyListing: nothing wanted and nothing live is
// reconciled at once.
func TestReconciledEmptyListing(t *testing.T) {
	f := newFixture(t)
	f.want()
	if !closed(f.rec.Reconciled()) {
		t.Fatal("an empty first listing left Reconciled open")
	}
}
