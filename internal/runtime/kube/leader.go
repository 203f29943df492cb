package kube

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderOptions configure Elect.
type LeaderOptions struct {
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity of this instance. Default: the host name and the pid.
	Identity                                  string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Logger                                    *slog.Logger
}

// Elect campaigns for the Lease until ctx ends. leading is closed once this
// instance leads; stopped is closed when it no longer campaigns: it lost
// the Lease, or ctx ended (the Lease is then released, so another replica
// takes over at once). Work done while leading must stop when stopped is
// closed: two instances never lead at once.
func Elect(ctx context.Context, cs kubernetes.Interface, o LeaderOptions) (leading, stopped <-chan struct{}, err error) {
	if o.Identity == "" {
		h, _ := os.Hostname()
		o.Identity = fmt.Sprintf("%s_%d", h, os.Getpid())
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Namespace == "" {
		o.Namespace = PodNamespace()
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	lead, stop := make(chan struct{}), make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				o.Logger.Info("leading", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
				close(lead)
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("leader election: %w", err)
	}
	go func() {
		defer close(stop)
		le.Run(ctx)
	}()
	return lead, stop, nil
}

// PodNamespace returns the namespace previewd's pod runs in, or "default"
// outside a cluster.
func PodNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}
