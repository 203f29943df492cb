package env

import (
	"strconv"
	"time"
)

// Kind says what an environment tracks.
type Kind string

// The kinds of environment.
const (
	KindPullRequest Kind = "pull_request"
	KindBranch      Kind = "branch"
	KindProduction  Kind = "production"
)

// Status is where an environment is in its life.
type Status string

// The statuses an environment moves through. The names are part of the HTTP
// API contract.
const (
	StatusPending   Status = "pending"
	StatusBuilding  Status = "building"
	StatusMigrating Status = "migrating"
	StatusStarting  Status = "starting"
	StatusReady     Status = "ready"
	StatusFailed    Status = "failed"
	StatusDeleting  Status = "deleting"
)

// ProductionKey is the key of the environment that tracks the production
// branch.
const ProductionKey = "production"

// Source is what a forge reports for one environment that should exist: an
// open pull request, a branch, or the production branch.
type Source struct {
	Key    string `json:"key"`
	Kind   Kind   `json:"kind"`
	Number int    `json:"number,omitempty"`
	Branch string `json:"branch"`
	SHA    string `json:"sha"`
	// Repo is the git URL (or local path) the runtime fetches the code
	// from. It holds no credentials.
	Repo string `json:"repo,omitempty"`
	// Ref is the ref the runtime fetches to get SHA, e.g. refs/heads/x or
	// refs/pull/7/head.
	Ref string `json:"ref,omitempty"`
	// Title of the pull request, if any.
	Title string `json:"title,omitempty"`
	// Fork is true for a pull request whose head lives in another repository.
	Fork bool `json:"fork,omitempty"`
	// Base is the branch the change is compared with (a pull request's
	// base, or the production branch for a branch), and BaseSHA its
	// commit; both empty for production. Path filters diff the change
	// against their merge base.
	Base    string `json:"base,omitempty"`
	BaseSHA string `json:"baseSha,omitempty"`
	// Trusted says whether the environment may receive secrets meant for
	// same-repository changes. Forks are untrusted unless configured.
	Trusted bool `json:"trusted"`
	// Hold, when not empty, says why the change must not be deployed yet
	// (e.g. waiting for checks). The environment stays pending.
	Hold string `json:"hold,omitempty"`
	// Keep is true when the change carries lifecycle.keepLabel: its
	// preview never sleeps or expires.
	Keep bool `json:"keep,omitempty"`
	// DBTier is the database tier the change asks for (a preview:db=<tier>
	// label): one of the DBTier constants, or empty for the configured
	// default. Anything else is what the labels said, kept so that the
	// reconciler can say why it used the default instead.
	DBTier string `json:"dbTier,omitempty"`
}

// The database tiers a pull request can ask for (label preview:db=<tier>).
const (
	// DBTierSchema is a schema of its own in the shared database.
	DBTierSchema = "schema"
	// DBTierClone is a database of its own cloned from the template.
	DBTierClone = "clone"
	// DBTierEmpty is an empty database of its own.
	DBTierEmpty = "empty"
)

// TierChoice is what a tier asked for by command (/preview db <tier>)
// gives a pull request.
type TierChoice struct {
	// Tier is the tier the preview gets from the command: the one asked
	// for, or the default when the ask was cleared.
	Tier string `json:"tier"`
	// Label is the tier a preview:db=<tier> label asks for, which wins
	// over the command; empty without one.
	Label string `json:"label,omitempty"`
	// Made is the tier the preview's database has now; a different Tier
	// is re-provisioned by the next reconcile.
	Made string `json:"made"`
}

// TierError refuses a database tier asked for by command, saying why in
// words for the pull request (a tier not offered, production, a database
// with one tier).
type TierError struct{ Why string }

func (e *TierError) Error() string { return e.Why }

// KnownDBTier reports whether tier is one of the DBTier constants.
func KnownDBTier(tier string) bool {
	return tier == DBTierSchema || tier == DBTierClone || tier == DBTierEmpty
}

// Production reports whether the source is the production branch.
func (s Source) Production() bool { return s.Kind == KindProduction }

// Environment is one environment as the store and the API see it.
type Environment struct {
	Key     string `json:"key"`
	Kind    Kind   `json:"kind"`
	Number  int    `json:"number,omitempty"`
	Branch  string `json:"branch"`
	SHA     string `json:"sha"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	URL     string `json:"url"`
	// Database names the environment's database (file, schema or database
	// name), for people.
	Database string `json:"database,omitempty"`
	// DBTier is the database tier (DBTierSchema...) its database was made
	// with; empty before one was, or when the provider has one tier.
	DBTier    string    `json:"dbTier,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// ReadyAt is when the current SHA became ready.
	ReadyAt *time.Time `json:"readyAt,omitempty"`
	// DeletedAt is set once the environment has been removed.
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	// LastActivityAt is the last push, proxied request or command.
	LastActivityAt *time.Time `json:"lastActivityAt,omitempty"`
	// ExpiresAt is when lifecycle.ttl removes the preview unless there is
	// activity first; nil when it never expires (no ttl, kept,
	// production).
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Kept is true when /preview keep (or the API) pinned the preview:
	// it never sleeps or expires.
	Kept bool `json:"kept,omitempty"`
	// Usage is what it used while it ran, priced when rates are set.
	Usage *Usage `json:"usage,omitempty"`
	// Rehearsal is the latest migration rehearsal report; only filled for
	// a single environment.
	Rehearsal *Rehearsal `json:"rehearsal,omitempty"`
	// Events are the recent history, newest first; only filled for a single
	// environment.
	Events []Event `json:"events,omitempty"`
}

// Production reports whether e is the production environment.
func (e Environment) Production() bool { return e.Kind == KindProduction }

// ShortSHA returns the first seven characters of the SHA.
func ShortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// Event is one line of an environment's history.
type Event struct {
	Time    time.Time `json:"time"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	SHA     string    `json:"sha,omitempty"`
}

// Vars returns the variables every app and migrate command receives,
// without the database's (see the database provider) and PORT.
func Vars(s Source, url string) map[string]string {
	v := map[string]string{
		"PREVIEW_KEY":        s.Key,
		"PREVIEW_URL":        url,
		"PREVIEW_SHA":        s.SHA,
		"PREVIEW_BRANCH":     s.Branch,
		"PREVIEW_PRODUCTION": strconv.FormatBool(s.Production()),
	}
	if s.Kind == KindPullRequest {
		v["PREVIEW_NUMBER"] = strconv.Itoa(s.Number)
	}
	return v
}

// Release is one version of an environment to roll out: the source at a
// SHA, its URL and every variable its processes get.
type Release struct {
	Source
	// URL is where the environment is reached.
	URL string
	// Vars are given to build, migrate and the app: the PREVIEW_*
	// variables and the database's.
	Vars map[string]string
	// Spec is the app spec of this commit (the config with the
	// repository's .previewd.yaml over it); nil leaves the runtime's own
	// options.
	Spec *AppSpec
	// Rehearsal is set on the release Migrate gets for the migration
	// rehearsal: Vars point at previewd's copy of the database, not the
	// environment's, and what the runtime makes for it (a log section, a
	// Job and its Secret) must be its own, never taken for the
	// environment's migration.
	Rehearsal bool
	// Warnings are what the runtime's Deploy found wrong with the running
	// release that does not stop it (e.g. it listens beyond loopback);
	// they go into the ready status and its event.
	Warnings []string
}

// StepError is a failure of the app's own step (build, migrate, start) for
// one SHA. It is terminal for that SHA: retrying without a change would
// fail the same way. Tail holds the last lines of the step's output.
type StepError struct {
	Step string
	Err  error
	Tail string
}

func (e *StepError) Error() string { return e.Step + " failed: " + e.Err.Error() }

func (e *StepError) Unwrap() error { return e.Err }

// WaitError says a step cannot go on yet for a reason outside previewd
// (e.g. the image is not in the registry yet). The environment stays
// pending with Reason as its message and is looked at again after After.
type WaitError struct {
	Reason string
	After  time.Duration
}

func (e *WaitError) Error() string { return e.Reason }
