-- Fork contributors a writer approved (/preview approve): their pull
-- requests deploy without the fork label. Trust lifts only the label;
-- fork environments still get no configured secrets.
CREATE TABLE IF NOT EXISTS trusted_contributors (
	login      TEXT PRIMARY KEY COLLATE NOCASE,
	by_actor   TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
