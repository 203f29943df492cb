package kube

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestLeaderElection runs two instances on one Lease: exactly one leads;
// when it stops, the other takes over, and they never lead at once.
func TestLeaderElection(t *testing.T) {
	f := newFixture(t)
	ns := uniqueKey("lease")
	if _, err := f.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.cleanup(ns)
	var mu sync.Mutex
	leaders, maxLeaders := 0, 0
	type instance struct {
		cancel  context.CancelFunc
		leading <-chan struct{}
		done    chan struct{}
	}
	start := func(id string) *instance {
		ctx, cancel := context.WithCancel(context.Background())
		cs := kubernetes.NewForConfigOrDie(f.cp.Config())
		leading, stopped, err := Elect(ctx, cs, LeaderOptions{
			Namespace: ns, Name: "previewd", Identity: id,
			// Long enough that a loaded API server does not cost the leader
			// its lease (the other would lead while it still works); the
			// takeover does not wait for it: the leader releases the Lease.
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		in := &instance{cancel: cancel, leading: leading, done: make(chan struct{})}
		go func() {
			defer close(in.done)
			select {
			case <-leading:
			case <-stopped:
				return
			}
			// The work of a leader: it runs until leadership ends.
			mu.Lock()
			leaders++
			maxLeaders = max(maxLeaders, leaders)
			mu.Unlock()
			<-stopped
			mu.Lock()
			leaders--
			mu.Unlock()
		}()
		return in
	}
	a, b := start("a"), start("b")
	var first, second *instance
	select {
	case <-a.leading:
		first, second = a, b
	case <-b.leading:
		first, second = b, a
	case <-time.After(20 * time.Second):
		t.Fatal("nobody leads")
	}
	time.Sleep(time.Second)
	select {
	case <-second.leading:
		t.Fatal("both lead")
	default:
	}
	begin := time.Now()
	first.cancel() // releases the Lease
	<-first.done
	select {
	case <-second.leading:
		t.Logf("took over in %s", time.Since(begin).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("the second instance did not take over")
	}
	second.cancel()
	<-second.done
	mu.Lock()
	defer mu.Unlock()
	if maxLeaders != 1 {
		t.Errorf("%d instances led at once", maxLeaders)
	}
}
