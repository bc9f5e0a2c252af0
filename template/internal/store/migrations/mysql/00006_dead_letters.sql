-- +goose Up
-- Messages a consumer gave up on (undecodable, or failing after the last attempt): kept
-- for the team to inspect, replay or delete; the broker delivers them no more.
CREATE TABLE dead_letters (
    consumer   VARCHAR(100) CHARACTER SET ascii NOT NULL,
    message_id VARCHAR(100) CHARACTER SET ascii NOT NULL,
    subject    VARCHAR(255) NOT NULL,
    event_id   VARCHAR(100) NOT NULL DEFAULT '',
    payload    LONGTEXT     NOT NULL,
    error      TEXT         NOT NULL,
    attempts   INT          NOT NULL,
    dead_at    DATETIME(6)  NOT NULL,
    PRIMARY KEY (consumer, message_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE dead_letters;
