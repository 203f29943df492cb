// Package github is the forge that turns a GitHub repository's open pull
// requests into environments (key pr-N, fetched from refs/pull/N/head) and
// its production branch into production.
//
// Client wraps go-github with the transport every call goes through: a
// timeout per attempt, retries of idempotent requests after a 5xx or a
// timeout, and GitHub's rate limits honoured (wait until the reset after
// a primary limit, for Retry-After after a secondary one; never a storm).
// Source lists pull requests with conditional requests (an unchanged
// answer is a 304, which costs no rate limit) and re-reads one key on
// Refresh, applying Filter (labels, branch globs, drafts, forks) and
// optionally waiting for named checks. Webhook verifies, deduplicates and
// turns deliveries into keys to reconcile.
package github
