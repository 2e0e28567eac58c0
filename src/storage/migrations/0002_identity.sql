-- Users, API keys, issued tokens (sessions) and the hash-chained audit log.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,              -- comma-separated role names
    status        TEXT NOT NULL CHECK (status IN ('active', 'deactivated')),
    creator       TEXT,
    created_at    INTEGER NOT NULL,           -- Unix milliseconds
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     BLOB NOT NULL UNIQUE,        -- SHA-256 of the key
    created_by   TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    rate_per_sec REAL,
    burst        INTEGER
) STRICT;

-- Every issued token; a token is refused once revoked_at is set.
CREATE TABLE sessions (
    jti        TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    revoked_at INTEGER,
    revoked_by TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id, expires_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Append-only; hash = SHA-256(prev_hash || canonical row). Pruning keeps the
-- hash of the last removed row in meta('audit_anchor') so the rest verifies.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    ts          INTEGER NOT NULL,
    type        TEXT NOT NULL,
    ip          TEXT,
    msisdn      TEXT,
    user_id     TEXT,
    username    TEXT,
    api_key_id  TEXT,
    request_id  TEXT,
    path        TEXT,
    detail      TEXT NOT NULL,                -- JSON object
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
) STRICT;
CREATE INDEX audit_by_ts ON audit_events (ts);
CREATE INDEX audit_by_type ON audit_events (type, id);
CREATE INDEX audit_by_user ON audit_events (user_id, id);

-- Bumped by every change the server caches in memory, so a running server
-- notices changes made by CLI commands on the same database.
INSERT INTO meta (key, value) VALUES ('auth_generation', '0');
CREATE TRIGGER users_changed_i AFTER INSERT ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'auth_generation'; END;
CREATE TRIGGER users_changed_u AFTER UPDATE ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'auth_generation'; END;
CREATE TRIGGER users_changed_d AFTER DELETE ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'auth_generation'; END;
CREATE TRIGGER keys_changed_i AFTER INSERT ON api_keys BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'auth_generation'; END;
CREATE TRIGGER keys_changed_u AFTER UPDATE OF revoked_at, expires_at, rate_per_sec, burst ON api_keys BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'auth_generation'; END;
CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked_at ON sessions BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'auth_generation'; END;
