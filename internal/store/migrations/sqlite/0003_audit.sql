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
