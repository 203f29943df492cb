package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/previewd/previewd/internal/config"
)

func TestPostgresOptions(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Database.Postgres = config.Postgres{
		AdminURL: "postgres://a@h/db", Isolation: "database", Template: "tpl",
		AppHost: "bouncer:6432", ProductionURL: "postgres://app@h/db", ConnectionLimit: 7,
		PasswordSecret: "from-config",
	}
	o, err := postgresOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.AdminURL != "postgres://a@h/db" || o.Isolation != "database" || o.Template != "tpl" || o.AppHost != "bouncer:6432" ||
		o.ProductionURL != "postgres://app@h/db" || o.ConnectionLimit != 7 || string(o.PasswordSecret) != "from-config" {
		t.Errorf("options = %+v", o)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "secret")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a data-dir secret was made although passwordSecret is set: %v", err)
	}

	// Without passwordSecret, the data dir's secret, the same every time.
	cfg.Database.Postgres.PasswordSecret = ""
	o1, err := postgresOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := postgresOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(o1.PasswordSecret) < 32 || string(o1.PasswordSecret) != string(o2.PasswordSecret) {
		t.Errorf("data-dir secrets %q, %q; want one secret of at least 32 bytes", o1.PasswordSecret, o2.PasswordSecret)
	}
}
