-- Fork contributors a writer approved (/preview approve): their pull
-- requests deploy without the fork label. Trust lifts only the label;
-- fork environments still get no configured secrets. Logins are stored
-- lower-case (GitHub logins compare case-insensitively).
CREATE TABLE trusted_contributors (
	login      TEXT COLLATE "C" PRIMARY KEY,
	by_actor   TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
