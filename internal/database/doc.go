// Package database gives each environment its own database. A Provider
// creates (idempotently) and drops what one environment owns; the kinds live
// in sub-packages: sqlite (one file each) and postgres (one schema or one
// database, each with its own role).
//
// A Tiered provider holds one Provider per database tier (a schema, a
// database cloned from the template, an empty database) and routes by
// Target.Tier, so a pull request can choose its tier (preview:db=<tier>).
//
// Production is special everywhere: a provider returns no inventory items
// for production and refuses to drop anything that is production's, so no
// code path can drop it.
//
// Drop works from inventory items alone and names what it did not remove
// (refused, foreign or failed) in a *LeftError, so the caller keeps exactly
// those recorded and the next teardown retries them. Every provider is held
// to these rules by one contract test (contract_test.go).
package database
