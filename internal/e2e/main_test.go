package e2e

import (
	"os"
	"testing"

	"github.com/previewd/previewd/internal/kubetest"
	"github.com/previewd/previewd/internal/pgtest"
)

// TestMain stops the shared PostgreSQL cluster and Kubernetes control
// plane, if a test started them.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.CloseShared()
	kubetest.CloseShared()
	os.Exit(code)
}
