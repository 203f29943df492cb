package sqlite

import (
	"context"
	"fmt"
	"os"

	"github.com/previewd/previewd/internal/database"
)

var _ database.Sizer = (*Provider)(nil)

// Size implements database.Sizer: the bytes of the environment's database
// file and its write-ahead log.
func (p *Provider) Size(ctx context.Context, t database.Target) (int64, error) {
	var n int64
	for i, path := range []string{p.Path(t.Key), p.Path(t.Key) + "-wal"} {
		fi, err := os.Stat(path)
		switch {
		case err == nil:
			n += fi.Size()
		case i == 0:
			return 0, fmt.Errorf("the database of %s: %w", t.Key, err)
		}
	}
	return n, nil
}
