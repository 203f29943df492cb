package config

import (
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Rehearsal configures the migration rehearsal: before a preview's
// migrations run against its own database they run against a copy of the
// reference data (postgres: database.postgres.template, or a schema-only
// copy of production; sqlite: a copy of production's file), and what they
// did is reported on the pull request, the dashboard and the API. With
// sqlite the report has the time and what was dropped only.
type Rehearsal struct {
	// Enabled turns the rehearsal on. Default true with database kinds
	// postgres and sqlite.
	Enabled *bool `yaml:"enabled"`
	// LockTimeout and StatementTimeout are set on the rehearsal database:
	// a statement that waits longer for a lock, or runs longer, fails the
	// rehearsal and so the rollout. Defaults 5s and 10m.
	LockTimeout      Period `yaml:"lockTimeout"`
	StatementTimeout Period `yaml:"statementTimeout"`
	// FailOn are the findings that fail the previewd/migrations commit
	// status: drop, rewrite, not-null, type, timeout, failed, lock>5s (a
	// lock that blocks writes held longer). A failed migration always
	// fails it. Default none.
	FailOn []string `yaml:"failOn"`
}

func (r *Rehearsal) setDefaults(kind string) {
	if r.Enabled == nil {
		on := kind == "postgres" || kind == "sqlite"
		r.Enabled = &on
	}
	if !r.LockTimeout.set {
		r.LockTimeout.Duration = 5 * time.Second
	}
	if !r.StatementTimeout.set {
		r.StatementTimeout.Duration = 10 * time.Minute
	}
}

func (r *Rehearsal) validate(kind string, bad func(string, string, ...any)) {
	if r.LockTimeout.err != nil {
		bad("database.rehearsal.lockTimeout", "%v", r.LockTimeout.err)
	}
	if r.StatementTimeout.err != nil {
		bad("database.rehearsal.statementTimeout", "%v", r.StatementTimeout.err)
	}
	if _, err := env.ParseFailOn(r.FailOn); err != nil {
		bad("database.rehearsal.failOn", "%v", err)
	}
	if r.Enabled != nil && *r.Enabled && kind != "postgres" && kind != "sqlite" {
		bad("database.rehearsal.enabled", "the rehearsal needs database kind postgres or sqlite")
	}
}

// On reports whether the rehearsal runs.
func (r Rehearsal) On() bool { return r.Enabled != nil && *r.Enabled }

// Rules returns FailOn parsed (Validate has checked it).
func (r Rehearsal) Rules() []env.FailOn {
	rules, _ := env.ParseFailOn(r.FailOn)
	return rules
}
