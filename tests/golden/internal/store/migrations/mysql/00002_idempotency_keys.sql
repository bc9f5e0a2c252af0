-- +goose Up
CREATE TABLE idempotency_keys (
    `key`        VARCHAR(255) CHARACTER SET ascii NOT NULL,
    request_hash CHAR(64)     CHARACTER SET ascii NOT NULL,
    resource_id  CHAR(36)     CHARACTER SET ascii NOT NULL,
    created_at   DATETIME(6)  NOT NULL,
    PRIMARY KEY (`key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE idempotency_keys;
