package git

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Cache is a bare repository that holds the commits fetched for every
// environment, so each commit's objects are fetched once. One fetch (or
// ref deletion) runs at a time, also across processes sharing the
// directory (previewd serve and a second previewd on one dataDir): they
// take a flock on <dir>.lock.
type Cache struct {
	dir string
	mu  sync.Mutex
}

// NewCache returns the cache kept in dir (made on the first fetch).
func NewCache(dir string) *Cache { return &Cache{dir: dir} }

// Dir is the cache's bare repository.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) exists() bool {
	_, err := os.Stat(filepath.Join(c.dir, "HEAD"))
	return err == nil
}

// Has reports whether the cache holds commit sha.
func (c *Cache) Has(ctx context.Context, sha string) bool {
	if !IsSHA(sha) || !c.exists() {
		return false
	}
	_, err := Run(ctx, c.dir, "cat-file", "-e", sha+"^{commit}")
	return err == nil
}

// Fetch makes sure the cache holds commit sha of repo: if it does not, it
// fetches ref (a full ref name such as refs/heads/x or refs/pull/7/head)
// into the cache's ref into, and, when ref has moved on since sha was
// listed, asks for the commit itself. creds, if set, is asked for
// environment variables that give git its credentials, only when a fetch
// is needed. ctx bounds the whole fetch, and the cache is free again
// once it ends.
func (c *Cache) Fetch(ctx context.Context, repo, ref, into, sha string, creds func(context.Context) ([]string, error)) error {
	if err := CheckSHA(sha); err != nil {
		return err
	}
	for _, r := range []string{ref, into} {
		if !strings.HasPrefix(r, "refs/") || strings.ContainsAny(r, ": \t\n") {
			return fmt.Errorf("%q is not a full ref name", r)
		}
	}
	// A commit already cached needs no lock: git's readers are safe beside
	// a fetch, and a long fetch of another commit does not hold this up.
	if c.Has(ctx, sha) {
		return nil
	}
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if !c.exists() {
		if _, err := Run(ctx, "", "init", "--quiet", "--bare", "--", c.dir); err != nil {
			return err
		}
	}
	if c.Has(ctx, sha) {
		return nil
	}
	var vars []string
	if creds != nil {
		var err error
		if vars, err = creds(ctx); err != nil {
			return err
		}
	}
	// "--" ends the options, so neither the URL nor the refspec can be
	// read as one.
	_, ferr := RunEnv(ctx, c.dir, vars, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", repo, "+"+ref+":"+into)
	if c.Has(ctx, sha) {
		return nil
	}
	// The ref moved on since it was listed; ask for the commit itself.
	if _, err := RunEnv(ctx, c.dir, vars, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", repo, sha); err != nil {
		return fmt.Errorf("fetching %s: %w", env.ShortSHA(sha), errors.Join(ferr, err))
	}
	return nil
}

// lock takes the cache for one fetch or ref deletion: the mutex within
// this process, then the flock on <dir>.lock against other processes,
// waiting while ctx lasts. The lock file is never removed, so everyone
// locks the same file.
func (c *Cache) lock(ctx context.Context) (unlock func(), err error) {
	c.mu.Lock()
	defer func() {
		if err != nil {
			c.mu.Unlock()
		}
	}()
	if err := os.MkdirAll(filepath.Dir(c.dir), 0o755); err != nil {
		return nil, fmt.Errorf("creating the object cache's directory: %w", err)
	}
	f, err := os.OpenFile(c.dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the object cache's lock: %w", err)
	}
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking the object cache: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the object cache (another process fetches): %w", ctx.Err())
		case <-time.After(delay):
		}
	}
	return func() {
		f.Close() // releases the flock
		c.mu.Unlock()
	}, nil
}

// DeleteRef removes ref from the cache, so the commits only it kept can be
// pruned by git's automatic gc. A ref (or a cache) that is not there is no
// error.
func (c *Cache) DeleteRef(ctx context.Context, ref string) error {
	unlock, err := c.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if !c.exists() {
		return nil
	}
	if _, err := Run(ctx, c.dir, "show-ref", "--verify", "--quiet", "--", ref); err != nil {
		return nil // not there
	}
	if _, err := Run(ctx, c.dir, "update-ref", "-d", "--", ref); err != nil {
		return fmt.Errorf("deleting %s from the object cache: %w", ref, err)
	}
	return nil
}

// Archive writes the tree of commit sha into dir (which must exist),
// streaming git archive's tar output. An entry that would leave dir is
// refused.
func (c *Cache) Archive(ctx context.Context, sha, dir string) error {
	if err := CheckSHA(sha); err != nil {
		return err
	}
	cmd := command(ctx, c.dir, nil, "archive", "--format=tar", "--", sha)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	terr := untar(out, dir)
	// Drain what is left, so git is not blocked writing; a read error
	// here shows in Wait.
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return runError(ctx, "archive", stderr.String(), err)
	}
	return terr
}

// untar writes the archive's directories, files and symbolic links under
// dir. Names that are absolute or climb out of dir are refused. A symbolic
// link is written as it is (the app's own tree may hold links), but an
// entry under a link the archive made is refused: a crafted tree could
// otherwise write through the link to anywhere.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	links := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading archive: %w", err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q leaves the work dir", h.Name)
		}
		for p := filepath.Dir(name); p != "."; p = filepath.Dir(p) {
			if links[p] {
				return fmt.Errorf("archive entry %q lies under the symbolic link %q", h.Name, p)
			}
		}
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeFile(target, tr, os.FileMode(h.Mode)&0o777); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
			links[name] = true
		default:
			// git archive writes a pax global header holding the commit
			// id, and nothing else of interest.
		}
	}
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
