-- name: CreateItem :exec
INSERT INTO items (id, name, description, version, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?);

-- name: GetItem :one
SELECT id, name, description, version, created_at, updated_at
FROM items
WHERE id = ?;

-- name: ListItems :many
SELECT id, name, description, version, created_at, updated_at
FROM items
WHERE id > sqlc.arg(after)
ORDER BY id
LIMIT ?;

-- name: UpdateItem :execrows
UPDATE items
SET name = sqlc.arg(name), description = sqlc.arg(description),
    version = version + 1, updated_at = sqlc.arg(updated_at)
WHERE id = sqlc.arg(id) AND version = sqlc.arg(expected_version);

-- name: DeleteItem :execrows
DELETE FROM items WHERE id = ?;
