-- +goose Up
-- The sweep of expired idempotency records finds them by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP INDEX idempotency_keys_created_at ON idempotency_keys;
