-- +goose Up
-- The transactional outbox: each change of a resource writes its event here, in the same
-- transaction; the relay (internal/events) publishes pending rows to the broker in order
-- per resource and deletes published rows after the retention.
CREATE TABLE outbox (
    id            TEXT        NOT NULL PRIMARY KEY,
    resource_id   TEXT        NOT NULL,
    type          TEXT        NOT NULL,
    version       BIGINT      NOT NULL,
    payload       TEXT        NOT NULL,
    traceparent   TEXT        NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL,
    claimed_until TIMESTAMPTZ,
    published_at  TIMESTAMPTZ,
    UNIQUE (resource_id, version)
);
-- The relay's scan of pending rows, oldest first, and the retention sweep.
CREATE INDEX outbox_pending ON outbox (created_at) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at);

-- +goose Down
DROP TABLE outbox;
