-- +goose Up
-- The transactional outbox: each change of a resource writes its event here, in the same
-- transaction; the relay (internal/events) publishes pending rows to the broker in order
-- per resource and deletes published rows after the retention.
CREATE TABLE outbox (
    id            CHAR(36)     CHARACTER SET ascii NOT NULL,
    resource_id   VARCHAR(64)  CHARACTER SET ascii NOT NULL,
    type          VARCHAR(100) CHARACTER SET ascii NOT NULL,
    version       BIGINT       NOT NULL,
    payload       LONGTEXT     NOT NULL,
    traceparent   VARCHAR(64)  CHARACTER SET ascii NOT NULL DEFAULT '',
    created_at    DATETIME(6)  NOT NULL,
    claimed_until DATETIME(6)  NULL,
    published_at  DATETIME(6)  NULL,
    PRIMARY KEY (id),
    UNIQUE KEY outbox_resource_version (resource_id, version),
    KEY outbox_pending (published_at, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE outbox;
