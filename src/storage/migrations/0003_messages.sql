-- Messages to deliver, their attempts, eSight's error reports, and
-- quarantined error reports that could not be parsed.
--
-- Message ids are time-ordered 64-bit integers (milliseconds << 16 | counter),
-- so inserts append to the primary key instead of scattering over it.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,        -- header.messageId, idempotency key
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivering', 'delivered', 'failed', 'rejected')),
    meter_id        TEXT NOT NULL,
    site_id         TEXT NOT NULL,
    local_market    TEXT NOT NULL,
    data_feed_type  TEXT NOT NULL,
    datapoints      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,  -- in the current retry cycle
    cycle_started   INTEGER NOT NULL,            -- max_age counts from here (acceptance or manual retry)
    body            BLOB NOT NULL,               -- the JSON as received
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    error_code      TEXT,
    error_message   TEXT
) STRICT;
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX messages_leased ON messages (lease_until) WHERE status = 'delivering';
CREATE INDEX messages_by_status ON messages (status, id);
CREATE INDEX messages_by_meter ON messages (meter_id, id);
CREATE INDEX messages_by_site ON messages (site_id, id);

CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY,
    message     INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    http_status INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX attempts_by_message ON delivery_attempts (message, id);
CREATE INDEX attempts_by_time ON delivery_attempts (at);

CREATE TABLE esight_errors (
    id          INTEGER PRIMARY KEY,
    esight_id   TEXT NOT NULL UNIQUE,            -- the report's _id
    message_ref TEXT NOT NULL,                   -- header.messageId as reported
    message     INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    received_at INTEGER NOT NULL,
    error_count INTEGER NOT NULL,
    body        BLOB NOT NULL
) STRICT;
CREATE INDEX esight_errors_by_message ON esight_errors (message, id);

CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    request_id  TEXT,
    code        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    body        BLOB NOT NULL                    -- capped copy of the raw body
) STRICT;
