package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// TestOpenDatabaseTiers: serve's postgres provider is tiered, its default
// the configured isolation (schema; database with a template: clone;
// without: empty), and offers what the server setup allows; the db
// commands' is not tiered; sqlite has one tier. Nothing connects.
func TestOpenDatabaseTiers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	parse := func(t *testing.T, db string) *config.Config {
		t.Helper()
		yaml := fmt.Sprintf("forge: {git: {url: %s}}\ndatabase: %s\n", filepath.Join(dir, "repo"), db)
		cfg, err := config.Parse([]byte(yaml), dir, os.LookupEnv)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	const admin = "postgres://previewd:pw@127.0.0.1:1/app"
	for name, tt := range map[string]struct {
		postgres string
		def      string
		offered  []string
		refused  []string
	}{
		"schema":                 {"{adminURL: '" + admin + "'}", env.DBTierSchema, []string{"schema", "empty"}, []string{"clone"}},
		"schema with a template": {"{adminURL: '" + admin + "', template: tmpl}", env.DBTierSchema, []string{"schema", "clone", "empty"}, nil},
		"database, template":     {"{adminURL: '" + admin + "', isolation: database, template: tmpl}", env.DBTierClone, []string{"schema", "clone", "empty"}, nil},
		"database, no template":  {"{adminURL: '" + admin + "', isolation: database}", env.DBTierEmpty, []string{"schema", "empty"}, []string{"clone"}},
		"pooled admin":           {"{adminURL: '" + admin + "', adminPooled: true, template: tmpl}", env.DBTierSchema, []string{"schema"}, []string{"clone", "empty"}},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := OpenDatabase(ctx, parse(t, "{kind: postgres, postgres: "+tt.postgres+"}"))
			if err != nil {
				t.Fatal(err)
			}
			d, ok := p.(*database.Tiered)
			if !ok {
				t.Fatalf("serve's postgres provider is %T, want tiered", p)
			}
			defer d.Close()
			if d.Default() != tt.def {
				t.Errorf("default %q, want %q", d.Default(), tt.def)
			}
			for _, tier := range tt.offered {
				if got, err := d.Resolve(tier); err != nil || got != tier {
					t.Errorf("Resolve(%s) = %q, %v", tier, got, err)
				}
			}
			for _, tier := range tt.refused {
				if _, err := d.Resolve(tier); err == nil {
					t.Errorf("Resolve(%s) offered it", tier)
				}
			}
			if pg, ok := pgProvider(p); !ok || (pg.Isolation() == "schema") != (tt.def == env.DBTierSchema) {
				t.Errorf("the default tier's provider: %v %v", pg, ok)
			}
		})
	}
	cli, err := OpenCLIDatabase(ctx, parse(t, "{kind: postgres, postgres: {adminURL: '"+admin+"'}}"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.(interface{ Close() }).Close()
	if _, ok := cli.(*database.Tiered); ok {
		t.Error("the db commands' provider is tiered")
	}
	lite, err := OpenDatabase(ctx, parse(t, "{kind: sqlite}"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lite.(*database.Tiered); ok {
		t.Error("sqlite is tiered")
	}
}
