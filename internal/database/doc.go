// Package database gives each environment its own database. A Provider
// creates (idempotently) and drops what one environment owns; the kinds live
// in sub-packages: sqlite (one file each) and postgres (one schema or one
// database, each with its own role).
//
// Production is special everywhere: a provider returns no inventory items
// for production and refuses to drop anything that is production's, so no
// code path can drop it.
package database
