-- +goose Up
-- MySQL 8+ and MariaDB (Galera): InnoDB, an explicit primary key, UUIDv7 text IDs (no
-- auto-increment), one DDL statement per migration (DDL is not transactional here).
CREATE TABLE items (
    id          CHAR(36)     CHARACTER SET ascii NOT NULL,
    name        VARCHAR(200) NOT NULL,
    description TEXT         NOT NULL,
    version     BIGINT       NOT NULL,
    created_at  DATETIME(6)  NOT NULL,
    updated_at  DATETIME(6)  NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE items;
