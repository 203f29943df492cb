-- +goose Up
-- A first document, so a fresh environment shows that its migrations ran.
-- StatementBegin/End because the text has lines ending in ';', which goose
-- would otherwise take as the end of the statement.
-- +goose StatementBegin
INSERT INTO documents (title, content, created_at, updated_at)
VALUES (
    'Welcome to the markdown editor',
    '# Welcome

This document was created by **migration 3**, so seeing it means this
environment''s database has been migrated.

Each preview environment gets its own process, database and URL:

- edit this document and watch the preview update as you type;
- create new documents from the list page;
- everything is stored in this environment''s own database.

> Raw HTML such as `<script>` is never passed through to the page.
',
    date_trunc('milliseconds', now()),
    date_trunc('milliseconds', now())
);
-- +goose StatementEnd

-- +goose Down
DELETE FROM documents WHERE title = 'Welcome to the markdown editor';
