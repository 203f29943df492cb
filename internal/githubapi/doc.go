// Package githubapi is previewd's client of GitHub's REST API, for one
// repository: go-github, authenticated with a token or as a GitHub App
// installation (ghinstallation), over the transport every call goes
// through. That transport bounds each attempt with a timeout, retries
// idempotent requests after a 5xx or a timeout (never a POST, which may
// have been done), and honours GitHub's rate limits: after a primary limit
// no request is sent before X-RateLimit-Reset, a secondary one is waited
// out for its Retry-After, and a wait longer than MaxWait fails at once
// with a RateLimitedError instead of becoming a storm of requests.
//
// The forge (forge/github) and the notifier (notify) both talk to GitHub
// through it; it knows nothing of either, nor of previewd's config.
package githubapi
