package git

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrNoTree is returned by Files when the commit has no directory at the
// path asked for.
var ErrNoTree = errors.New("no such directory in the commit")

// maxTreeBytes bounds what Files reads into memory.
const maxTreeBytes = 32 << 20

// Files returns the regular files under dir (a slash-separated path inside
// the repository, "" or "." for the root) in commit sha, keyed by their
// slash-separated path below dir. Nothing is written to disk. Symbolic
// links and submodules are left out. A dir the commit does not hold is
// ErrNoTree.
func (c *Cache) Files(ctx context.Context, sha, dir string) (map[string][]byte, error) {
	if err := CheckSHA(sha); err != nil {
		return nil, err
	}
	dir = path.Clean(strings.TrimPrefix(dir, "/"))
	if dir == ".." || strings.HasPrefix(dir, "../") || strings.ContainsAny(dir, ":\n") {
		return nil, fmt.Errorf("%q is not a path inside the repository", dir)
	}
	treeish := sha + "^{tree}"
	if dir != "." {
		treeish = sha + ":" + dir
	}
	typ, err := Run(ctx, c.dir, "cat-file", "-t", treeish)
	if ctx.Err() != nil {
		return nil, err
	}
	if err != nil || strings.TrimSpace(string(typ)) != "tree" {
		return nil, fmt.Errorf("%s at %s: %w", dir, short(sha), ErrNoTree)
	}
	out, err := Run(ctx, c.dir, "archive", "--format=tar", "--end-of-options", treeish)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(out))
	total := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		total += int(h.Size)
		if total > maxTreeBytes {
			return nil, fmt.Errorf("%s at %s holds more than %d MiB", dir, short(sha), maxTreeBytes>>20)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		files[path.Clean(h.Name)] = b
	}
}
