-- +goose Up
-- The consumers' inbox: the IDs of the events each consumer has processed, written in the
-- same transaction as the event's effect, so a redelivered event changes nothing twice.
CREATE TABLE inbox (
    consumer     TEXT      NOT NULL,
    event_id     TEXT      NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- +goose Down
DROP TABLE inbox;
