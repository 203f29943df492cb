package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// An entry store keeps entries (dependency caches, kept builds) under
// dir, one directory each, named by the hash of what they were made from:
//
//	<dir>/<id>/data/      what is shared into checkouts
//	<dir>/<id>/meta.json  its size and when it was made
//	<dir>/<id>/used       touched on every use (its mtime is the last use)
//	<dir>/<id>/users/     one file per checkout that uses it, holding its path
//	<dir>/<id>.lock       flock: held while the entry is made, used or evicted
//	<dir>/.tmp-<id>/      an entry being made, renamed to <id> when complete
//
// An entry exists only once complete: it is made in .tmp-<id> and renamed.
// A .tmp-<id> left by a process killed mid-way is removed by the next one
// that holds the lock. The flock is the lock between environments and
// between previewd processes sharing the directory.

type entryMeta struct {
	Kind    string    `json:"kind"`
	What    string    `json:"what"` // the cache's path, or the build's outputs
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// entryID hashes parts into an entry's name.
func entryID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// lockEntry takes the flock of the entry (exclusive), waiting for it
// while ctx lasts. The lock file may be removed by an eviction while we
// wait; then the lock taken is on a file no one else sees, and we try
// again.
func lockEntry(ctx context.Context, dir, id string) (*os.File, error) {
	path := filepath.Join(dir, id+".lock")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cache directory: %w", err)
	}
	delay := 5 * time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("opening cache lock: %w", err)
		}
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				f.Close()
				return nil, fmt.Errorf("locking cache entry: %w", err)
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, fmt.Errorf("waiting for cache entry %s: %w", id[:12], ctx.Err())
			case <-time.After(delay):
			}
			if delay < 100*time.Millisecond {
				delay *= 2
			}
		}
		if sameFile(f, path) {
			return f, nil
		}
		f.Close()
	}
}

// tryLockEntry takes the entry's flock if no one holds it.
func tryLockEntry(dir, id string) *os.File {
	path := filepath.Join(dir, id+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil || !sameFile(f, path) {
		f.Close()
		return nil
	}
	return f
}

func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// commitEntry completes the entry made in .tmp-<id> (whose data is in
// place): it writes its meta and renames it to <id>. The caller holds the
// lock.
func commitEntry(dir, id string, meta entryMeta) error {
	tmp := filepath.Join(dir, ".tmp-"+id)
	size, err := treeSize(filepath.Join(tmp, "data"))
	if err != nil {
		return fmt.Errorf("measuring cache entry: %w", err)
	}
	meta.Size, meta.Created = size, time.Now().UTC()
	b, _ := json.Marshal(meta)
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o644); err != nil {
		return fmt.Errorf("writing cache entry: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "users"), 0o755); err != nil {
		return fmt.Errorf("writing cache entry: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "used"), nil, 0o644); err != nil {
		return fmt.Errorf("writing cache entry: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, id)); err != nil {
		return fmt.Errorf("completing cache entry: %w", err)
	}
	return nil
}

// useEntry records that the checkout at workDir uses the entry, and when.
// The caller holds the lock.
func useEntry(dir, id, workDir string) error {
	e := filepath.Join(dir, id)
	now := time.Now()
	if err := os.Chtimes(filepath.Join(e, "used"), now, now); err != nil {
		return fmt.Errorf("marking cache entry used: %w", err)
	}
	u := filepath.Join(e, "users", entryID(workDir)[:16])
	if err := os.WriteFile(u, []byte(workDir), 0o644); err != nil {
		return fmt.Errorf("marking cache entry used: %w", err)
	}
	return nil
}

// inUse reports whether a checkout that used the entry is still there,
// removing the records of those that are gone.
func inUse(entry string) bool {
	users, _ := os.ReadDir(filepath.Join(entry, "users"))
	used := false
	for _, u := range users {
		p := filepath.Join(entry, "users", u.Name())
		b, err := os.ReadFile(p)
		if err == nil && exists(string(b)) {
			used = true
			continue
		}
		os.Remove(p)
	}
	return used
}

// storedEntry is what eviction decides on.
type storedEntry struct {
	Dir, ID string
	Size    int64
	Used    time.Time
	InUse   bool
}

// evictions picks the entries to remove: those unused for longer than
// maxAge, then the least recently used until the rest fit in maxBytes.
// An entry in use is never picked (even if the rest then do not fit).
func evictions(entries []storedEntry, now time.Time, maxAge time.Duration, maxBytes int64) []storedEntry {
	sorted := append([]storedEntry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Used.Before(sorted[j].Used) })
	var total int64
	for _, e := range sorted {
		total += e.Size
	}
	var out []storedEntry
	for _, e := range sorted {
		if e.InUse {
			continue
		}
		if (maxAge > 0 && now.Sub(e.Used) > maxAge) || (maxBytes > 0 && total > maxBytes) {
			out = append(out, e)
			total -= e.Size
		}
	}
	return out
}

// scanEntries lists the complete entries of the stores, removing leftover
// .tmp- directories that no one is making.
func scanEntries(dirs ...string) []storedEntry {
	var out []storedEntry
	for _, dir := range dirs {
		des, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range des {
			name := de.Name()
			if !de.IsDir() {
				continue
			}
			if id, ok := strings.CutPrefix(name, ".tmp-"); ok {
				if l := tryLockEntry(dir, id); l != nil {
					removeTree(filepath.Join(dir, name))
					l.Close()
				}
				continue
			}
			var meta entryMeta
			b, err := os.ReadFile(filepath.Join(dir, name, "meta.json"))
			if err != nil || json.Unmarshal(b, &meta) != nil {
				continue
			}
			used := meta.Created
			if st, err := os.Stat(filepath.Join(dir, name, "used")); err == nil {
				used = st.ModTime()
			}
			out = append(out, storedEntry{Dir: dir, ID: name, Size: meta.Size, Used: used, InUse: inUse(filepath.Join(dir, name))})
		}
	}
	return out
}

// evict removes what evictions picks, each under its lock and after
// checking again that no checkout uses it. It returns the entries removed.
func evict(now time.Time, maxAge time.Duration, maxBytes int64, dirs ...string) ([]storedEntry, error) {
	var gone []storedEntry
	var errs []error
	for _, e := range evictions(scanEntries(dirs...), now, maxAge, maxBytes) {
		l := tryLockEntry(e.Dir, e.ID)
		if l == nil {
			continue // being used right now
		}
		path := filepath.Join(e.Dir, e.ID)
		if !inUse(path) {
			// Renamed away first, so a crash half-way leaves a .tmp- that
			// the next scan removes, never a partial entry.
			tmp := filepath.Join(e.Dir, ".tmp-"+e.ID)
			removeTree(tmp)
			if err := os.Rename(path, tmp); err != nil {
				errs = append(errs, fmt.Errorf("evicting cache entry %s: %w", e.ID, err))
			} else {
				if err := removeTree(tmp); err != nil {
					errs = append(errs, fmt.Errorf("evicting cache entry %s: %w", e.ID, err))
				}
				os.Remove(filepath.Join(e.Dir, e.ID+".lock"))
				gone = append(gone, e)
			}
		}
		l.Close()
	}
	return gone, errors.Join(errs...)
}

// treeSize is the total size of the regular files under root.
func treeSize(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// removeTree removes root even where directories in it are read-only (a
// Go module cache's are).
func removeTree(root string) error {
	err := os.RemoveAll(root)
	if err == nil {
		return nil
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(root)
}

// readOnly clears the write bits of the regular files under root, so an
// app (not run as root) cannot write into a file its checkout shares
// through a hard link with the entry and every other checkout.
func readOnly(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if m := info.Mode().Perm(); m&0o222 != 0 {
			return os.Chmod(p, m&^0o222)
		}
		return nil
	})
}

// Share methods: how an entry's data is put into a checkout.
const (
	shareLink    = "link"    // reflink (copy-on-write) where possible, else hard links
	shareHard    = "hard"    // hard links only
	shareReflink = "reflink" // reflinks only; an error where the filesystem has none
	shareCopy    = "copy"    // a plain copy
	shareSymlink = "symlink" // one symbolic link to the entry

	shareCopyReflink = "copy-reflink" // reflinks where possible, else a copy (kept builds)
)

// materialize puts the tree (or file) src at dst, which must not exist,
// by method.
func materialize(src, dst, method string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if method == shareSymlink {
		return os.Symlink(src, dst)
	}
	reflink := method == shareLink || method == shareReflink || method == shareCopyReflink
	put := func(from, to string, info fs.FileInfo) error {
		if reflink {
			err := cloneFile(from, to, info.Mode().Perm())
			if err == nil {
				return nil
			}
			if method == shareReflink || !errors.Is(err, errNoReflink) {
				return err
			}
			reflink = false // this filesystem has none: no more tries
		}
		if method == shareCopy || method == shareCopyReflink {
			return copyFile(from, to, info.Mode().Perm())
		}
		return os.Link(from, to)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return os.Mkdir(to, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return put(p, to, info)
		}
		return nil // sockets, devices: not kept
	})
}

func copyFile(from, to string, mode fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in) // copy_file_range where the kernel has it
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
