// Package testsvc holds what the test harnesses for real servers
// (pgtest, kubetest) share: one server per test process, started on first
// use and stopped after the tests; the rule that a test needing a server
// may skip only outside CI; and the server processes themselves (a free
// port, start with the output in a log file, wait, stop).
package testsvc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Shared is a server shared by the tests of one process.
type Shared[T interface{ Close() error }] struct {
	// Start starts the server; Timeout bounds it.
	Start   func(ctx context.Context) (T, error)
	Timeout time.Duration
	// NotInstalled is the error Start returns when the server's binaries
	// are missing: outside CI, such a test skips.
	NotInstalled error

	once    sync.Once
	mu      sync.Mutex
	v       T
	err     error
	started bool
}

// Get returns the server, starting it on first use. If it cannot start,
// the test skips (binaries missing, not in CI) or fails.
func (s *Shared[T]) Get(t testing.TB) T {
	t.Helper()
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
		defer cancel()
		v, err := s.Start(ctx)
		s.mu.Lock()
		s.v, s.err, s.started = v, err, err == nil
		s.mu.Unlock()
	})
	if s.err != nil {
		SkipOrFatal(t, s.err, s.NotInstalled)
	}
	return s.v
}

// Close stops the server if Get started it.
func (s *Shared[T]) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		if err := s.v.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		s.started = false
	}
}

// SkipOrFatal ends the test for err: a skip if err is notInstalled and the
// CI variable is unset (or "false" or "0"), else a failure.
func SkipOrFatal(t testing.TB, err, notInstalled error) {
	t.Helper()
	if notInstalled != nil && errors.Is(err, notInstalled) && !InCI() {
		t.Skipf("%v (set CI=true to make this a failure)", err)
	}
	t.Fatal(err)
}

// InCI reports whether the CI environment variable says the tests run in
// continuous integration.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}

// SkipUnlessCI skips the test outside CI and fails it in CI, saying why:
// for what a test needs from the machine (git, /proc, IPv6) that CI has.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (set CI=true to make this a failure)", args...)
}
