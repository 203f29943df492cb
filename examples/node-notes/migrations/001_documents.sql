-- Documents: a title and markdown content, rendered to HTML by the worker.
CREATE TABLE documents (
    id          bigserial PRIMARY KEY,
    title       text        NOT NULL,
    content     text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    html        text,
    words       integer,
    rendered_at timestamptz
);
CREATE INDEX documents_unrendered ON documents (id) WHERE rendered_at IS NULL;
