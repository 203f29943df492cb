// Package postgres is the database provider that gives each environment
// its own PostgreSQL role and either its own schema (isolation: schema, in
// the admin URL's database) or its own database (isolation: database,
// cloned from a template).
//
// Safety by construction:
//
//   - Names come only from validated keys (Name): Prefix plus the key, at
//     most 63 bytes, never public, pg_*, information_schema, production's
//     database or user, or the template. Keys that are not valid keys are
//     refused before any SQL runs.
//   - Every identifier is quoted with pgx.Identifier.Sanitize. The only
//     literals in utility statements (which take no bind parameters) are
//     marker comments and SCRAM verifiers: they are checked against a small
//     alphabet and then quoted by pgx's literal sanitizer as simple-protocol
//     arguments (see checkLiteral). The one exception, the DO block with
//     which a database-mode reset waits for sessions to end, holds only
//     preview names, checked the same way.
//   - Each environment has its own LOGIN role (NOSUPERUSER NOCREATEDB
//     NOCREATEROLE NOINHERIT, a connection limit) whose search_path is set on
//     the role, so apps need no session SET and PgBouncer (which pools per
//     role) never hands one environment's server connection to another.
//     It has CONNECT but not CREATE on the admin database, unless
//     Options.AllowCreateSchema grants CREATE under an event trigger that
//     lets it create no schema but its own (createschema.go).
//   - Every object carries a marker comment naming its key, the previewd
//     instance that made it and, for `previewd db create`, the CLI as its
//     owner; Drop and Collect never touch a preview-named object that lacks
//     it or names another instance, nor anything that is production's.
//     Collect removes only this instance's objects and never the CLI's,
//     which serve's Drop leaves too.
//
// The files follow the concerns: postgres.go is the provider (Options,
// Items, Ensure and Drop dispatch, roles), names.go the names, markers and
// passwords, schema.go schema isolation, database.go database isolation
// (cloning the template), createschema.go the event trigger that confines
// preview roles given CREATE on the database (Options.AllowCreateSchema),
// collect.go orphan collection, check.go the probe of appHost for session
// state leaking through a pooler, copy.go the catalog-based copy of a
// database (CopyDatabase: no pg_dump), template.go the template's refresh
// from production with masking (RefreshTemplate), rehearsal.go and
// rehearsal_report.go the migration rehearsal (Rehearse).
//
// A refresh never writes production: it reads it in a READ ONLY
// transaction, and every database it makes, renames or drops is checked
// against production's, the admin database and the server's own names
// (checkRefreshable). Its masking expressions are SQL from the config, run
// as the admin role in the new copy only.
//
// reset.go is reset-db (a fresh schema or database built beside the
// current one and swapped in), seed.go the runner of
// database.postgres.seed.
package postgres
