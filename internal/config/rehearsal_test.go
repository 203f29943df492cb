package config

import (
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
)

const pgDatabase = "database: {kind: postgres, postgres: {adminURL: 'postgres://admin:pw@db:5432/app', passwordSecret: s}"

func TestRehearsalConfig(t *testing.T) {
	c, err := Parse([]byte("forge: {git: {url: x}}\n"+pgDatabase+", rehearsal: {lockTimeout: 2s, failOn: [drop, rewrite, 'lock>5s']}}\n"), "/x", lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Database.Rehearsal
	if !r.On() || r.LockTimeout.Duration != 2*time.Second || r.StatementTimeout.Duration != 10*time.Minute {
		t.Errorf("rehearsal %+v", r)
	}
	if got := r.Rules(); len(got) != 3 || got[2] != (env.FailOn{Kind: env.FindingLock, Over: 5 * time.Second}) {
		t.Errorf("rules %+v", got)
	}
	c, err = Parse([]byte("forge: {git: {url: x}}\n"), "/x", lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Database.Rehearsal.On() {
		t.Error("the rehearsal is off with sqlite")
	}
	for yaml, want := range map[string]string{
		pgDatabase + ", rehearsal: {failOn: [drops]}}":       `database.rehearsal.failOn: failOn "drops": want drop, rewrite`,
		pgDatabase + ", rehearsal: {failOn: ['lock>soon']}}": `failOn "lock>soon": want lock>DURATION`,
		pgDatabase + ", rehearsal: {lockTimeout: never}}":    `database.rehearsal.lockTimeout: "never" is not a duration`,
		"database: {kind: none, rehearsal: {enabled: true}}": "database.rehearsal.enabled: the rehearsal needs database kind postgres or sqlite",
	} {
		_, err := Parse([]byte("forge: {git: {url: x}}\n"+yaml+"\n"), "/x", lookup(nil))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", yaml, err, want)
		}
	}
}
