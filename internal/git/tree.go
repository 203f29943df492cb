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

// ErrNoFile is returned by File when the commit has no regular file at
// the path asked for.
var ErrNoFile = errors.New("no such file in the commit")

// ErrFileTooLarge is returned by File for a file above its limit.
var ErrFileTooLarge = errors.New("file too large")

// maxFileBytes bounds what File reads into memory (a seed file may be
// large).
const maxFileBytes = maxTreeBytes

// File returns the content of the regular file at name (a slash-separated
// path inside the repository) in commit sha, read from the object cache
// without a checkout. A path the commit holds no regular file at (none, a
// directory, a symbolic link) is ErrNoFile.
func (c *Cache) File(ctx context.Context, sha, name string) ([]byte, error) {
	if err := CheckSHA(sha); err != nil {
		return nil, err
	}
	name = path.Clean(strings.TrimPrefix(name, "/"))
	if name == "." || name == ".." || strings.HasPrefix(name, "../") || strings.ContainsAny(name, ":\n") {
		return nil, fmt.Errorf("%q is not a file path inside the repository", name)
	}
	// ls-tree says what the path is without reading it: mode, type, id,
	// size.
	out, err := Run(ctx, c.dir, "ls-tree", "--long", "--full-tree", "-z", "--end-of-options", sha, "--", name)
	if err != nil {
		return nil, err
	}
	meta, _, ok := strings.Cut(strings.TrimSuffix(string(out), "\x00"), "\t")
	f := strings.Fields(meta)
	if !ok || len(f) != 4 || f[0] != "100644" && f[0] != "100755" || f[1] != "blob" {
		return nil, fmt.Errorf("%s at %s: %w", name, env.ShortSHA(sha), ErrNoFile)
	}
	if n, err := strconv.ParseInt(f[3], 10, 64); err != nil || n > maxFileBytes {
		return nil, fmt.Errorf("%s at %s: %w (more than %d KiB)", name, env.ShortSHA(sha), ErrFileTooLarge, maxFileBytes>>10)
	}
	return Run(ctx, c.dir, "cat-file", "blob", f[2])
}

// Changed returns the files (slash-separated paths) that differ between
// head and its merge base with base: what a change based on base
// touches. A renamed file counts at both its old and its new path. Both
// commits must be in the cache. Commits with no common history give nil
// (nothing can be told), not an empty list.
func (c *Cache) Changed(ctx context.Context, base, head string) ([]string, error) {
	for _, s := range []string{base, head} {
		if err := CheckSHA(s); err != nil {
			return nil, err
		}
	}
	mb, err := Run(ctx, c.dir, "merge-base", "--end-of-options", base, head)
	if err != nil && ctx.Err() == nil && c.Has(ctx, base) && c.Has(ctx, head) {
		return nil, nil // no common ancestor
	}
	if err != nil {
		return nil, fmt.Errorf("finding the merge base of %s and %s: %w", env.ShortSHA(base), env.ShortSHA(head), err)
	}
	out, err := Run(ctx, c.dir, "diff", "--name-only", "--no-renames", "--no-ext-diff", "--no-textconv", "-z", "--end-of-options", strings.TrimSpace(string(mb)), head, "--")
	if err != nil {
		return nil, err
	}
	files := []string{}
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files, nil
}
