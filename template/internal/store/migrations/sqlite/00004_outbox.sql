-- +goose Up
-- The transactional outbox: each change of a resource writes its event here, in the same
-- transaction; the relay (internal/events) publishes pending rows to the broker in order
-- per resource and deletes published rows after the retention.
CREATE TABLE outbox (
    id            TEXT      NOT NULL PRIMARY KEY,
    resource_id   TEXT      NOT NULL,
    type          TEXT      NOT NULL,
    version       INTEGER   NOT NULL,
    payload       TEXT      NOT NULL,
    traceparent   TEXT      NOT NULL DEFAULT '',
    created_at    TIMESTAMP NOT NULL,
    claimed_until TIMESTAMP,
    published_at  TIMESTAMP,
    UNIQUE (resource_id, version)
);
CREATE INDEX outbox_pending ON outbox (published_at, created_at);

-- +goose Down
DROP TABLE outbox;
