-- name: CreateIdempotencyRecord :exec
INSERT INTO idempotency_keys (key, request_hash, resource_id, created_at)
VALUES (?, ?, ?, ?);

-- name: GetIdempotencyRecord :one
SELECT request_hash, resource_id, created_at
FROM idempotency_keys
WHERE key = ?;
