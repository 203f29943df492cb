// Package ghtest is a fake GitHub for tests: an httptest server holding a
// small stateful repository (pull requests, branches, comments,
// deployments, statuses, check runs) whose every response is built from
// the real payloads in testdata, with conditional requests, Link
// pagination and injected faults; and helpers that sign and deliver
// webhooks as GitHub does.
package ghtest
