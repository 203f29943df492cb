-- Environments put down on request (/preview down, the API) while their
-- change is still open: removed, and not deployed again until up.
CREATE TABLE IF NOT EXISTS down_environments (
	key        TEXT PRIMARY KEY,
	by_actor   TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
