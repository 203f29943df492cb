-- +goose Up
-- The document list is ordered by last update.
CREATE INDEX documents_updated_at_idx ON documents (updated_at DESC, id DESC);

-- +goose Down
DROP INDEX documents_updated_at_idx;
