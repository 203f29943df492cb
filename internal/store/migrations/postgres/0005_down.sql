-- Environments put down on request (/preview down, the API) while their
-- change is still open: removed, and not deployed again until up.
CREATE TABLE down_environments (
	key        TEXT COLLATE "C" PRIMARY KEY,
	by_actor   TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
