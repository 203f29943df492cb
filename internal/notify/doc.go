// Package notify tells people about environments where they look: on
// GitHub, one sticky comment per pull request (edited in place, found
// again by a hidden marker), a deployment per deployed SHA so the pull
// request shows "View deployment", and optionally a commit status.
//
// It talks to GitHub only through githubapi's go-github client, with its
// typed services. The comment and the deployments are not inventory
// items: they outlive the environment (the comment then says it was
// removed, the deployments are inactive), and teardown ends when the
// inventory is empty, which is before the removal can be told. They are
// found again on GitHub instead, by the comment's marker and by (SHA,
// environment).
package notify
