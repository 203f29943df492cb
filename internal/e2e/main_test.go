package e2e

import (
	"os"
	"testing"

	"github.com/previewd/previewd/internal/pgtest"
)

// TestMain stops the shared PostgreSQL cluster, if a test started one.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
