-- +goose Up
CREATE TABLE idempotency_keys (
    key          TEXT      NOT NULL PRIMARY KEY,
    request_hash TEXT      NOT NULL,
    resource_id  TEXT      NOT NULL,
    created_at   TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE idempotency_keys;
