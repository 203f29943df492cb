package app

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// nonLoopback returns an address of this machine beyond loopback, or an
// invalid one where it has none.
func nonLoopback(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// serveAt starts serve with m and returns the address it logs.
func serveAt(t *testing.T, m map[string]string) netip.AddrPort {
	t.Helper()
	dir, base := migrated(t)
	for k, v := range m {
		base[k] = v
	}
	ctx, cancel := context.WithCancel(t.Context())
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, env(base), dir, io.Discard, stderr) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if match := listenAddr.FindStringSubmatch(stderr.String()); match != nil {
			ap, err := netip.ParseAddrPort(match[1])
			if err != nil {
				t.Fatal(err)
			}
			return ap
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not log its address:\n%s", stderr)
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, stderr)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestServeHost: with HOST=127.0.0.1 (what previewd's local runtime
// gives) serve listens on loopback only, so nothing beyond this machine
// reaches it around previewd's proxy; without HOST it listens on every
// interface, as before.
func TestServeHost(t *testing.T) {
	other := nonLoopback(t)
	dial := func(ip netip.Addr, port uint16) error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, port).String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}

	ap := serveAt(t, map[string]string{"HOST": "127.0.0.1", "PORT": "0"})
	if ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("with HOST=127.0.0.1 serve listens on %s", ap)
	}
	if err := dial(netip.MustParseAddr("127.0.0.1"), ap.Port()); err != nil {
		t.Errorf("loopback does not reach serve: %v", err)
	}
	if other.IsValid() {
		if err := dial(other, ap.Port()); err == nil {
			t.Errorf("%s reaches serve listening on HOST=127.0.0.1", other)
		}
	} else {
		t.Log("no address beyond loopback to dial from")
	}

	all := serveAt(t, map[string]string{"HOST": "", "PORT": "0"})
	if !all.Addr().IsUnspecified() {
		t.Errorf("without HOST serve listens on %s, want every interface", all)
	}
	if other.IsValid() {
		if err := dial(other, all.Port()); err != nil {
			t.Errorf("without HOST, %s does not reach serve: %v", other, err)
		}
	}
}
