package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

var _ database.Resetter = (*Provider)(nil)

// NextPath returns the file Reset builds for key beside Path(key).
func (p *Provider) NextPath(key string) string { return p.auxPath(nextFile, key) }

// ResetItems implements database.Resetter: the file Reset builds, named
// key$next in the inventory.
func (p *Provider) ResetItems(t database.Target) []env.Item { return p.auxItems(nextFile, t) }

// Reset implements database.Resetter. It builds NextPath(key) from the
// seed (or empty) as Ensure would, gives it to prepare, and then renames
// it over Path(key), which is atomic: whoever opens the path afterwards
// gets the fresh file. The current file's -wal, -shm and -journal
// companions are removed right after the rename, so the fresh file is
// never read with the old one's log.
//
// An app that holds the old file open keeps reading and writing the old
// file (its inode) until it reopens it, and a connection it opens after
// the swap sees the fresh one: an app with a pool can mix the two. The
// caller must restart the app after Reset returns; until then the old
// data serves.
//
// prepare must close the database when it is done: a fresh file left with
// a non-empty write-ahead log or rollback journal (a transaction
// unfinished, or a log not checkpointed) is refused, and the current file
// is kept.
func (p *Provider) Reset(ctx context.Context, t database.Target, prepare func(ctx context.Context, next database.Conn) error) (database.Conn, error) {
	if t.Production || t.Key == env.ProductionKey {
		return database.Conn{}, fmt.Errorf("sqlite: refusing to reset production: %w", database.ErrProduction)
	}
	cur, err := p.Ensure(ctx, t)
	if err != nil {
		return database.Conn{}, err
	}
	next := p.NextPath(t.Key)
	if err := removeAll(next); err != nil {
		return database.Conn{}, fmt.Errorf("sqlite: removing what an earlier reset left: %w", err)
	}
	if err := p.create(next); err != nil {
		return database.Conn{}, err
	}
	fail := func(err error) (database.Conn, error) {
		if rerr := removeAll(next); rerr != nil {
			err = errors.Join(err, fmt.Errorf("sqlite: removing the fresh database: %w", rerr))
		}
		return database.Conn{}, err
	}
	conn := database.Conn{
		Vars: map[string]string{"DATABASE_PATH": next, "DATABASE_URL": "sqlite:" + next},
		Name: filepath.Base(next),
	}
	if err := prepare(ctx, conn); err != nil {
		return fail(fmt.Errorf("sqlite: preparing the fresh database: %w", err))
	}
	for _, log := range []string{next + "-wal", next + "-journal"} {
		if fi, err := os.Stat(log); err == nil && fi.Size() > 0 {
			return fail(fmt.Errorf("sqlite: prepare left %s with data in it (a transaction or a log not finished): close the database when done", filepath.Base(log)))
		}
	}
	if err := removeAll(next, "-wal", "-shm", "-journal"); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	path := p.Path(t.Key)
	if err := os.Rename(next, path); err != nil {
		return fail(fmt.Errorf("sqlite: swapping in the fresh database: %w", err))
	}
	if err := removeAll(path, "-wal", "-shm", "-journal"); err != nil {
		return database.Conn{}, fmt.Errorf("sqlite: removing the previous database's log: %w", err)
	}
	return cur, nil
}

// removeAll removes path followed by each suffix (path itself when none
// is given), and path's companions; what is gone already is not an error.
func removeAll(path string, suffixes ...string) error {
	if len(suffixes) == 0 {
		suffixes = []string{"", "-wal", "-shm", "-journal"}
	}
	var errs []error
	for _, s := range suffixes {
		if err := os.Remove(path + s); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RestartAfterReset reports that an app must be restarted after Reset: a
// connection it holds keeps the old file open until it reopens the path.
func (p *Provider) RestartAfterReset() bool { return true }
