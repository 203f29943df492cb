-- The audit trail: every action by a person or a token, newest last.
CREATE TABLE IF NOT EXISTS audit (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	time   INTEGER NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	via    TEXT NOT NULL,
	key    TEXT NOT NULL DEFAULT '',
	detail TEXT NOT NULL DEFAULT '',
	remote TEXT NOT NULL DEFAULT ''
);
-- Secrets previewd makes for itself (the session key), shared by the
-- replicas of one store.
CREATE TABLE IF NOT EXISTS secrets (
	name       TEXT PRIMARY KEY,
	value      TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
-- Sessions ended by signing out before they expire, kept until they would
-- have expired, so a copy of the cookie is refused too.
CREATE TABLE IF NOT EXISTS revoked_sessions (
	id         TEXT PRIMARY KEY,
	expires_at INTEGER NOT NULL
);
