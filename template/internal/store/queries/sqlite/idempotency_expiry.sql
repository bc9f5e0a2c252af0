-- name: DeleteExpiredIdempotencyRecord :execrows
-- A lookup that finds an expired record (older than IDEMPOTENCY_TTL) deletes it, unless a
-- concurrent create has replaced it since; the key then works as new.
DELETE FROM idempotency_keys
WHERE key = sqlc.arg(record_key) AND created_at < sqlc.arg(expired_before);

-- name: DeleteExpiredIdempotencyRecords :execrows
-- The periodic sweep: one batch of expired records, oldest first, by the created_at
-- index.
DELETE FROM idempotency_keys
WHERE key IN (
    SELECT expired.key FROM idempotency_keys AS expired
    WHERE expired.created_at < sqlc.arg(expired_before)
    ORDER BY expired.created_at
    LIMIT sqlc.arg(batch_size)
);
