-- +goose Up
-- The consumers' inbox: the IDs of the events each consumer has processed, written in the
-- same transaction as the event's effect, so a redelivered event changes nothing twice.
CREATE TABLE inbox (
    consumer     VARCHAR(100) CHARACTER SET ascii NOT NULL,
    event_id     CHAR(36)     CHARACTER SET ascii NOT NULL,
    processed_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (consumer, event_id),
    KEY inbox_processed_at (processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE inbox;
