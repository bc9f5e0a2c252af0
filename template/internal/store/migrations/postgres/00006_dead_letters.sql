-- +goose Up
-- Messages a consumer gave up on (undecodable, or failing after the last attempt): kept
-- for the team to inspect, replay or delete; the broker delivers them no more.
CREATE TABLE dead_letters (
    consumer   TEXT        NOT NULL,
    message_id TEXT        NOT NULL,
    subject    TEXT        NOT NULL,
    event_id   TEXT        NOT NULL DEFAULT '',
    payload    TEXT        NOT NULL,
    error      TEXT        NOT NULL,
    attempts   INTEGER     NOT NULL,
    dead_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

-- +goose Down
DROP TABLE dead_letters;
