// Package notify tells people about environments where they look: on
// GitHub, one sticky comment per pull request (edited in place, found
// again by a hidden marker), a deployment per deployed SHA so the pull
// request shows "View deployment", and optionally a commit status.
package notify
