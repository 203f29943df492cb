// Package github is the forge that turns a GitHub repository's open pull
// requests into environments (key pr-N, fetched from refs/pull/N/head) and
// its production branch into production.
//
// It talks to GitHub through a githubapi.Client (timeouts, retries and
// rate limits live there). Source lists pull requests with conditional
// requests (an unchanged answer is a 304, which costs no rate limit) and
// re-reads one key on Refresh, applying Filter (labels, branch globs,
// drafts, forks) and optionally waiting for named checks; GitEnv gives git
// the client's token for the clone URL. Webhook verifies, deduplicates and
// turns deliveries into keys to reconcile.
package github
