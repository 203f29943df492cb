package env

import "time"

// Change is one change of an environment, as the event stream
// (GET /api/v1/events) carries it: one per saved status change, so every
// step (building, migrating, starting, ready, failed, sleeping, queued,
// removed) appears as it happens.
//
// On the wire each is one Server-Sent Event:
//
//	id: <ID>
//	event: environment
//	data: <the Change as JSON, one line>
//
// with a comment line (": heartbeat") every 15 s. A client resumes with
// the Last-Event-ID header (or ?lastEventId=); when the server no longer
// holds the events after that id it sends one "event: reset" (data {})
// first, and the client reads the list again.
type Change struct {
	ID      uint64 `json:"id"`
	Key     string `json:"key"`
	Kind    Kind   `json:"kind"`
	Number  int    `json:"number,omitempty"`
	Branch  string `json:"branch"`
	SHA     string `json:"sha"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Reason is the event's reason (Building, Ready, Slept, Removed...).
	Reason string `json:"reason,omitempty"`
	URL    string `json:"url,omitempty"`
	// Time is when the change was saved; StepStartedAt is when the
	// current step began (for "building 12 s").
	Time          time.Time `json:"time"`
	StepStartedAt time.Time `json:"stepStartedAt,omitzero"`
	// Took is how long the rollout or teardown has run so far, in ms.
	TookMS int64 `json:"tookMs,omitempty"`
	// Removed is true once the environment is gone.
	Removed bool `json:"removed,omitempty"`
}

// LogLine is one line of an environment's output, tagged with the step
// that wrote it (build, migrate, run; on Kubernetes the pod and
// container, or migrate for the migration Job). Text is valid UTF-8 and
// at most MaxLogLine bytes (longer lines are cut and end in "…").
//
// GET /api/v1/environments/{key}/logs?follow=true streams them as
// Server-Sent Events:
//
//	event: log
//	data: <the LogLine as JSON, one line>
type LogLine struct {
	Step string    `json:"step"`
	Text string    `json:"text"`
	Time time.Time `json:"time,omitzero"`
}

// MaxLogLine is the longest log line shown, in bytes.
const MaxLogLine = 4096

// Answer is what the API answers an action on an environment (202): the
// key, the action, "accepted", and what it changed when it says so.
type Answer struct {
	Key    string `json:"key,omitempty"`
	Action string `json:"action,omitempty"`
	Status string `json:"status"`
	// ExpiresAt is when the preview now expires (extend; absent when it
	// never does).
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Kept is whether the preview is now pinned (keep, unkeep).
	Kept *bool `json:"kept,omitempty"`
	// DBTier is the database tier the preview now gets (db-tier).
	DBTier *TierChoice `json:"dbTier,omitempty"`
	Note   string      `json:"note,omitempty"`
}
