// Package store keeps previewd's state: environments, the inventory of what
// each owns, and an event history for each. A removed environment keeps its
// row (with deletedAt set) and its history.
//
// Two backends hold the same schema with the same semantics: an embedded
// SQLite file (pure Go, no cgo), the default, and PostgreSQL, which several
// previewd replicas can share. Both are brought up to date by versioned
// migrations when opened.
package store
