-- Each messageId stored once (issue 14): the `message_id` column and its
-- unique index (together ~70 of ~390 bytes per message) give way to
-- `message_key`, a 48-bit hash of the messageId (6 bytes in the row), under
-- a non-unique index; the messageId itself stays only in the body. See
-- storage/message_key.rs. Rebuilds `messages` with its indexes; runs with
-- foreign keys off (the runner checks them after).
--
-- `message_key_checked(id, message_id, body_format, body)` is registered by
-- the runner for this migration: it is `message_key(message_id)`, and fails
-- the migration (nothing applied) for a row whose body does not carry that
-- messageId, so no messageId is lost.
CREATE TABLE messages_v9 (
    id              INTEGER PRIMARY KEY,             -- time-ordered: created_at = id >> 16
    message_key     INTEGER NOT NULL,                -- 48-bit hash of header.messageId (not unique)
    status          INTEGER NOT NULL CHECK (status BETWEEN 0 AND 4),
    meter           INTEGER NOT NULL REFERENCES meters (id),
    site            INTEGER NOT NULL REFERENCES sites (id),
    feed            INTEGER NOT NULL REFERENCES feeds (id),
    datapoints      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,      -- in the current retry cycle
    cycle_started   INTEGER NOT NULL,                -- max_age counts from here
    body_format     INTEGER NOT NULL,                -- see storage/stored_body.rs
    body            BLOB NOT NULL,                   -- holds header.messageId
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    error_code      TEXT,
    error_message   TEXT
) STRICT;

INSERT INTO messages_v9 (id, message_key, status, meter, site, feed, datapoints, attempts, cycle_started,
                         body_format, body, updated_at, delivered_at, next_attempt_at, lease_until,
                         error_code, error_message)
    SELECT id, message_key_checked(id, message_id, body_format, body), status, meter, site, feed,
           datapoints, attempts, cycle_started, body_format, body, updated_at, delivered_at,
           next_attempt_at, lease_until, error_code, error_message
    FROM messages ORDER BY id;

DROP TABLE messages;
ALTER TABLE messages_v9 RENAME TO messages;

CREATE INDEX messages_by_message_key ON messages (message_key);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 0;
CREATE INDEX messages_leased ON messages (lease_until) WHERE status = 1;
CREATE INDEX messages_by_status ON messages (status, id);
CREATE INDEX messages_by_meter ON messages (meter, id);
CREATE INDEX messages_by_site ON messages (site, id);
CREATE INDEX messages_failed_by_meter ON messages (meter, id) WHERE status = 3;
CREATE INDEX messages_failed_by_site ON messages (site, id) WHERE status = 3;
CREATE INDEX messages_by_error_code ON messages (error_code, id) WHERE error_code IS NOT NULL;
