// Package store keeps previewd's state in an embedded SQLite database (pure
// Go, no cgo): environments, the inventory of what each owns, and an event
// history for each. A removed environment keeps its row (with deletedAt set)
// and its history.
package store
