package config

import (
	"errors"
	"strings"
	"testing"
)

// TestStore: the store is SQLite unless told otherwise; a postgres store
// takes its URL with ${VAR} expanded; Validate names a bad kind, a missing
// URL and a bad one, without repeating its password.
func TestStore(t *testing.T) {
	c, err := Parse([]byte("forge: {git: {url: x}}"), "/x", lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Kind != "sqlite" {
		t.Errorf("default store.kind = %q, want sqlite", c.Store.Kind)
	}
	c, err = Parse([]byte("forge: {git: {url: x}}\nstore: {kind: postgres, postgres: {url: 'postgres://previewd:${PW}@db/previewd'}}"), "/x",
		lookup(map[string]string{"PW": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Postgres.URL != "postgres://previewd:s3cret@db/previewd" {
		t.Errorf("store.postgres.url = %q", c.Store.Postgres.URL)
	}

	for name, tt := range map[string]struct{ yaml, want string }{
		"unknown kind": {"store: {kind: etcd}", `store.kind: unknown value "etcd"; want sqlite or postgres`},
		"no url":       {"store: {kind: postgres}", "store.postgres.url: required"},
		"bad url":      {"store: {kind: postgres, postgres: {url: 'mysql://u:s3cret@h/d'}}", `store.postgres.url: scheme "mysql"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("forge: {git: {url: x}}\n"+tt.yaml), "/x", lookup(nil))
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want only %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("err %q repeats the password", err)
			}
		})
	}
}
