-- The template resource: a note. Copy this shape for your own resources.
CREATE TABLE notes (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title      text        NOT NULL,
    body       text        NOT NULL DEFAULT '',
    tags       text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every update; the ETag, and what If-Match is checked against.
    version    integer     NOT NULL DEFAULT 1,
    -- The application validates first and answers 422; these are the last line of defence.
    CONSTRAINT notes_title_length CHECK (char_length(title) BETWEEN 1 AND 200),
    CONSTRAINT notes_body_length  CHECK (char_length(body) <= 20000),
    CONSTRAINT notes_tags_count   CHECK (cardinality(tags) <= 10)
);

CREATE INDEX notes_tags_idx ON notes USING gin (tags);

-- Idempotency-Key for POST /notes: a retried request gets the first response back.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    -- SHA-256 of the request body: the same key with a different body is refused.
    request_hash bytea       NOT NULL,
    status       smallint    NOT NULL,
    location     text        NOT NULL,
    etag         text        NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
