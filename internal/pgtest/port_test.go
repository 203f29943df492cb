package pgtest

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/testsvc"
)

// TestRetryAddressInUse makes the first port each server gets a taken one:
// Start retries once with a new port, and both servers come up.
func TestRetryAddressInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	var calls atomic.Int32
	pickPort = func() (int, error) {
		// Calls 1 (postgres) and 3 (pgbouncer) get the taken port.
		if n := calls.Add(1); n == 1 || n == 3 {
			return taken, nil
		}
		return testsvc.FreePort()
	}
	defer func() { pickPort = testsvc.FreePort }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Start(ctx, Options{})
	if err != nil {
		SkipOrFatal(t, err)
	}
	defer c.Close()
	if calls.Load() != 4 {
		t.Errorf("picked %d ports; want 4 (each server retried once)", calls.Load())
	}
	if c.port == taken || c.bouncerPort == taken {
		t.Errorf("a server claims the taken port %d", taken)
	}
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
}
