-- name: CreateIdempotencyRecord :exec
INSERT INTO idempotency_keys (key, request_hash, resource_id, created_at)
VALUES ($1, $2, $3, $4);

-- name: GetIdempotencyRecord :one
SELECT request_hash, resource_id, created_at
FROM idempotency_keys
WHERE key = $1;
