package git

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/previewd/previewd/internal/env"
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
		return nil, fmt.Errorf("%s at %s: %w", dir, env.ShortSHA(sha), ErrNoTree)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := command(actx, c.dir, nil, "archive", "--format=tar", "--end-of-options", treeish)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("git archive: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("git archive: %w", err)
	}
	files, terr := readTar(out, dir, sha)
	if terr != nil {
		cancel() // stop git writing the rest
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil && terr == nil {
		return nil, runError(ctx, "archive", stderr.String(), err)
	}
	return files, terr
}

// readTar reads the regular files of an archive into memory, refusing
// more than maxTreeBytes in all.
func readTar(r io.Reader, dir, sha string) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	var total int64
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
		total += h.Size
		if total > maxTreeBytes {
			return nil, fmt.Errorf("%s at %s holds more than %d MiB", dir, env.ShortSHA(sha), maxTreeBytes>>20)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		files[path.Clean(h.Name)] = b
	}
}

// ErrNoFile is ReadFile's error for a path the commit does not hold.
var ErrNoFile = errors.New("no such file in the commit")

// ReadFile returns the file at p (a slash-separated path inside the
// repository) in commit sha, from the cache's objects: no checkout is
// needed. A path the commit does not hold, or that is not a regular file,
// is ErrNoFile.
func (c *Cache) ReadFile(ctx context.Context, sha, p string) ([]byte, error) {
	if err := CheckSHA(sha); err != nil {
		return nil, err
	}
	p = path.Clean(strings.TrimPrefix(p, "/"))
	if p == "." || p == ".." || strings.HasPrefix(p, "../") || strings.ContainsAny(p, ":\n") {
		return nil, fmt.Errorf("%q is not a file path inside the repository", p)
	}
	// One entry: "<mode> <type> <object> <size>\t<path>"; a regular
	// file's mode is 100644 or 100755 (a link's is 120000).
	out, err := Run(ctx, c.dir, "ls-tree", "-l", "--end-of-options", sha, "--", p)
	if ctx.Err() != nil {
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	meta, name, _ := strings.Cut(strings.TrimSuffix(string(out), "\n"), "\t")
	f := strings.Fields(meta)
	if len(f) != 4 || name != p || f[1] != "blob" || (f[0] != "100644" && f[0] != "100755") {
		return nil, fmt.Errorf("%s at %s: %w", p, env.ShortSHA(sha), ErrNoFile)
	}
	if n, _ := strconv.Atoi(f[3]); n > maxTreeBytes {
		return nil, fmt.Errorf("%s at %s is %d bytes; at most %d are read", p, env.ShortSHA(sha), n, maxTreeBytes)
	}
	return Run(ctx, c.dir, "cat-file", "blob", f[2])
}
