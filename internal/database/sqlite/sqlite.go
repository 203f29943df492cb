// Package sqlite is the database provider that gives each environment its
// own SQLite file, copied from a seed file when one is configured.
package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// Provider keeps one database file per environment under Dir.
type Provider struct {
	dir  string
	seed string
	cli  bool // the db commands' provider: what it makes is the CLI's
}

// New returns a provider keeping files in dir, seeded from seed if not
// empty.
func New(dir, seed string) (*Provider, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &Provider{dir: abs, seed: seed}, nil
}

// ForCLI makes p the provider of the db commands: each database it makes
// or uses is marked as the CLI's (a "<key>.cli" file beside it), which a
// provider without ForCLI (serve) never collects or drops, until the db
// commands drop it.
func (p *Provider) ForCLI() *Provider {
	p.cli = true
	return p
}

// cliPath is the file marking key's database as the CLI's.
func (p *Provider) cliPath(key string) string {
	return filepath.Join(p.dir, key+".cli")
}

// cliOwned reports whether key's database is the CLI's and p is serve's.
func (p *Provider) cliOwned(key string) bool {
	if p.cli {
		return false
	}
	_, err := os.Stat(p.cliPath(key))
	return err == nil
}

var _ database.Provider = (*Provider)(nil)

// Path returns the database file of key. Keys are validated DNS labels, so
// the path cannot leave the directory.
func (p *Provider) Path(key string) string {
	return filepath.Join(p.dir, key+".sqlite")
}

type itemData struct {
	Path string `json:"path"`
}

// Items implements database.Provider.
func (p *Provider) Items(t database.Target) []env.Item {
	if t.Production {
		return nil
	}
	data, _ := json.Marshal(itemData{Path: p.Path(t.Key)})
	return []env.Item{{Kind: env.ItemSQLite, Name: t.Key, Data: data}}
}

// Ensure implements database.Provider: it creates the file (from the seed,
// through a temporary file and a rename, so a crash never leaves a
// half-copied database) if it does not exist yet.
func (p *Provider) Ensure(ctx context.Context, t database.Target) (database.Conn, error) {
	if err := env.CheckKey(t.Key); err != nil {
		return database.Conn{}, err
	}
	path := p.Path(t.Key)
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return database.Conn{}, fmt.Errorf("creating database directory: %w", err)
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := p.create(path); err != nil {
			return database.Conn{}, err
		}
	} else if err != nil {
		return database.Conn{}, fmt.Errorf("checking database file: %w", err)
	}
	if p.cli {
		if err := os.WriteFile(p.cliPath(t.Key), nil, 0o644); err != nil {
			return database.Conn{}, fmt.Errorf("marking the database as the CLI's: %w", err)
		}
	}
	return database.Conn{
		Vars: map[string]string{"DATABASE_PATH": path, "DATABASE_URL": "sqlite:" + path},
		Name: filepath.Base(path),
	}, nil
}

func (p *Provider) create(path string) error {
	tmp, err := os.CreateTemp(p.dir, ".new-*")
	if err != nil {
		return fmt.Errorf("creating database file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if p.seed != "" {
		src, err := os.Open(p.seed)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("opening seed database: %w", err)
		}
		_, err = io.Copy(tmp, src)
		src.Close()
		if err != nil {
			tmp.Close()
			return fmt.Errorf("copying seed database: %w", err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing database file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("creating database file: %w", err)
	}
	return nil
}

// Drop implements database.Provider. It removes the file and its -wal,
// -shm and -journal companions. It refuses (database.ErrProduction)
// production's file, in this directory or any other, and
// (database.ErrForeign) a recorded path that is not the file of the item's
// key, so a forged or mistaken item cannot remove another file. What it
// does not remove is named by a *database.LeftError.
func (p *Provider) Drop(ctx context.Context, items []env.Item) error {
	var left []env.Item
	var errs []error
	for _, it := range env.Find(items, env.ItemSQLite) {
		if err := p.drop(it); err != nil {
			left = append(left, it)
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &database.LeftError{Items: left, Err: errors.Join(errs...)}
}

func (p *Provider) drop(it env.Item) error {
	var d itemData
	if err := json.Unmarshal(it.Data, &d); err != nil || d.Path == "" {
		d.Path = p.Path(it.Name)
	}
	base := filepath.Base(d.Path)
	for _, a := range auxFiles {
		if key, ok := strings.CutSuffix(it.Name, a.suffix); ok {
			if k, ok := a.keyOf(base); !ok || k != key || !filepath.IsAbs(d.Path) {
				return fmt.Errorf("sqlite: %s is not the %s file of %q, so it %w", d.Path, a.what, key, database.ErrForeign)
			}
			return removeAll(d.Path)
		}
	}
	switch {
	case it.Name == env.ProductionKey || base == env.ProductionKey+".sqlite":
		return fmt.Errorf("sqlite: %s: %w", d.Path, database.ErrProduction)
	case env.CheckKey(it.Name) != nil || base != it.Name+".sqlite" || !filepath.IsAbs(d.Path):
		return fmt.Errorf("sqlite: %s is not the database file of %q, so it %w", d.Path, it.Name, database.ErrForeign)
	}
	if filepath.Dir(d.Path) == p.dir && p.cliOwned(it.Name) {
		return nil // the CLI's until `previewd db drop`
	}
	files := []string{d.Path, d.Path + "-wal", d.Path + "-shm", d.Path + "-journal"}
	if filepath.Dir(d.Path) == p.dir {
		files = append(files, p.cliPath(it.Name)) // last: a failed drop stays the CLI's
	}
	var errs []error
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// Collect implements database.Collector: it removes database files whose key
// no live environment has, and never production's nor the CLI's.
func (p *Provider) Collect(ctx context.Context, live map[string]bool) ([]string, error) {
	entries, err := os.ReadDir(p.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing databases: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if key, ok := nextFile.keyOf(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "-wal"), "-shm"), "-journal")); ok {
			// A Reset's fresh file: only a live environment's can be in
			// progress.
			if !live[key] {
				if err := removeAll(filepath.Join(p.dir, name), ""); err != nil {
					errs = append(errs, err)
				} else {
					removed = append(removed, name)
				}
			}
			continue
		}
		if filepath.Ext(name) == "" || name[0] == '.' {
			if strings.HasPrefix(name, ".new-") {
				if err := removeStaleTemp(filepath.Join(p.dir, name)); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		key := name[:len(name)-len(filepath.Ext(name))]
		if filepath.Ext(name) != ".sqlite" || live[key] || key == env.ProductionKey || env.CheckKey(key) != nil || p.cliOwned(key) {
			continue
		}
		data, _ := json.Marshal(itemData{Path: filepath.Join(p.dir, name)})
		if err := p.Drop(ctx, []env.Item{{Kind: env.ItemSQLite, Name: key, Data: data}}); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// staleTemp is how old a temporary file of Ensure's must be before Collect
// takes it for a crashed create's and removes it: a younger one may be a
// create in progress, which its removal would fail.
const staleTemp = 10 * time.Minute

func removeStaleTemp(path string) error {
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", path, err)
	}
	if time.Since(info.ModTime()) < staleTemp {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}
