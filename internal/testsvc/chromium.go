package testsvc

import (
	"errors"
	"os/exec"
	"testing"
)

// errNoChromium is what Chromium reports when no browser is installed.
var errNoChromium = errors.New("chromium is not installed (make test installs it)")

// Chromium returns the path of a Chromium binary for browser tests. When
// there is none, the test skips outside CI and fails in CI.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	SkipOrFatal(t, errNoChromium, errNoChromium)
	return ""
}
