-- The last migration rehearsal report of each environment (issue 13): the
-- SHA it is about and the report as JSON (env.Rehearsal).
CREATE TABLE rehearsals (
    key TEXT PRIMARY KEY,
    sha TEXT NOT NULL,
    report TEXT NOT NULL,
    at BIGINT NOT NULL
);
