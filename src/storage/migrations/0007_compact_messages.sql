-- Fewer bytes per stored message (issue 14). Rebuilds `messages` and
-- `delivery_attempts` in a narrower layout; runs with foreign keys off (the
-- runner checks them after). Bodies are copied as they are (body_format 0)
-- and packed afterwards in batches by the runner (`pack_raw_bodies`).
--
-- - meter, site and (local market, data feed type) are small integers
--   naming rows of `meters`, `sites` and `feeds`, which are never deleted;
-- - status is an integer: 0 pending, 1 delivering, 2 delivered, 3 failed,
--   4 rejected (0 and 1 take no bytes in a record);
-- - created_at is not stored: it is the id's millisecond part (id >> 16);
-- - an attempt is keyed (message, attempt) in a table without rowid, its
--   outcome an integer: 0 delivered, 1 retry, 2 failed.
CREATE TABLE meters (
    id       INTEGER PRIMARY KEY,
    meter_id TEXT NOT NULL UNIQUE
) STRICT;
CREATE TABLE sites (
    id      INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL UNIQUE
) STRICT;
CREATE TABLE feeds (
    id             INTEGER PRIMARY KEY,
    local_market   TEXT NOT NULL,
    data_feed_type TEXT NOT NULL,
    UNIQUE (local_market, data_feed_type)
) STRICT;

INSERT INTO meters (meter_id) SELECT DISTINCT meter_id FROM messages ORDER BY meter_id;
INSERT INTO sites (site_id) SELECT DISTINCT site_id FROM messages ORDER BY site_id;
INSERT INTO feeds (local_market, data_feed_type)
    SELECT DISTINCT local_market, data_feed_type FROM messages ORDER BY local_market, data_feed_type;

CREATE TABLE messages_v7 (
    id              INTEGER PRIMARY KEY,             -- time-ordered: created_at = id >> 16
    message_id      TEXT NOT NULL,                   -- header.messageId, idempotency key
    status          INTEGER NOT NULL CHECK (status BETWEEN 0 AND 4),
    meter           INTEGER NOT NULL REFERENCES meters (id),
    site            INTEGER NOT NULL REFERENCES sites (id),
    feed            INTEGER NOT NULL REFERENCES feeds (id),
    datapoints      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,      -- in the current retry cycle
    cycle_started   INTEGER NOT NULL,                -- max_age counts from here
    body_format     INTEGER NOT NULL,                -- see storage/stored_body.rs
    body            BLOB NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    error_code      TEXT,
    error_message   TEXT
) STRICT;

INSERT INTO messages_v7 (id, message_id, status, meter, site, feed, datapoints, attempts, cycle_started,
                         body_format, body, updated_at, delivered_at, next_attempt_at, lease_until,
                         error_code, error_message)
    SELECT m.id, m.message_id,
           CASE m.status WHEN 'pending' THEN 0 WHEN 'delivering' THEN 1 WHEN 'delivered' THEN 2
                         WHEN 'failed' THEN 3 ELSE 4 END,
           (SELECT id FROM meters WHERE meter_id = m.meter_id),
           (SELECT id FROM sites WHERE site_id = m.site_id),
           (SELECT id FROM feeds WHERE local_market = m.local_market AND data_feed_type = m.data_feed_type),
           m.datapoints, m.attempts, m.cycle_started, 0, m.body, m.updated_at, m.delivered_at,
           m.next_attempt_at, m.lease_until, m.error_code, m.error_message
    FROM messages m ORDER BY m.id;

CREATE TABLE delivery_attempts_v7 (
    message     INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,                    -- 1, 2, … per message, in order
    at          INTEGER NOT NULL,
    outcome     INTEGER NOT NULL CHECK (outcome BETWEEN 0 AND 2),
    http_status INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (message, attempt)
) STRICT, WITHOUT ROWID;

INSERT INTO delivery_attempts_v7 (message, attempt, at, outcome, http_status, error, duration_ms)
    SELECT message, row_number() OVER (PARTITION BY message ORDER BY id), at,
           CASE outcome WHEN 'delivered' THEN 0 WHEN 'retry' THEN 1 ELSE 2 END,
           http_status, error, duration_ms
    FROM delivery_attempts ORDER BY message, id;

DROP TABLE delivery_attempts;
DROP TABLE messages;
ALTER TABLE messages_v7 RENAME TO messages;
ALTER TABLE delivery_attempts_v7 RENAME TO delivery_attempts;

CREATE UNIQUE INDEX messages_by_message_id ON messages (message_id);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 0;
CREATE INDEX messages_leased ON messages (lease_until) WHERE status = 1;
CREATE INDEX messages_by_status ON messages (status, id);
CREATE INDEX messages_by_meter ON messages (meter, id);
CREATE INDEX messages_by_site ON messages (site, id);
CREATE INDEX attempts_by_time ON delivery_attempts (at);

-- Rows still holding raw bodies: packed by the runner after this migration.
INSERT INTO meta (key, value) VALUES ('pack_raw_bodies_after', '0')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
