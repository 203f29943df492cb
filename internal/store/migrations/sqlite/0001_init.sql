-- The schema of the first release. IF NOT EXISTS: stores made before
-- versioned migrations already hold these tables.
CREATE TABLE IF NOT EXISTS environments (
	key        TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	number     INTEGER NOT NULL DEFAULT 0,
	branch     TEXT NOT NULL DEFAULT '',
	sha        TEXT NOT NULL DEFAULT '',
	status     TEXT NOT NULL DEFAULT 'pending',
	message    TEXT NOT NULL DEFAULT '',
	url        TEXT NOT NULL DEFAULT '',
	database   TEXT NOT NULL DEFAULT '',
	failed_sha TEXT NOT NULL DEFAULT '',
	restarts   INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	ready_at   INTEGER,
	deleted_at INTEGER
);
CREATE TABLE IF NOT EXISTS inventory (
	key        TEXT NOT NULL,
	kind       TEXT NOT NULL,
	name       TEXT NOT NULL,
	data       TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (key, kind, name)
);
CREATE TABLE IF NOT EXISTS events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	key     TEXT NOT NULL,
	time    INTEGER NOT NULL,
	reason  TEXT NOT NULL,
	message TEXT NOT NULL,
	sha     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_key ON events (key, id);
