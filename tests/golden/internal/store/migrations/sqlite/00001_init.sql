-- +goose Up
CREATE TABLE items (
    id          TEXT      NOT NULL PRIMARY KEY,
    name        TEXT      NOT NULL,
    description TEXT      NOT NULL DEFAULT '',
    version     INTEGER   NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE items;
