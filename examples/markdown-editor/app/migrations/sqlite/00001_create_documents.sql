-- +goose Up
-- Times are stored as text in UTC ("2006-01-02 15:04:05.999-07:00"), which
-- sorts correctly and which the modernc.org/sqlite driver reads back as
-- time.Time because the columns are declared TIMESTAMP.
CREATE TABLE documents (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    title      TEXT NOT NULL,
    content    TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE documents;
