-- Username locks (auth/lockout.rs). The failure windows live in the
-- server's memory; this row lets other processes see a lock (`user list`,
-- the management API) and lift it (`user unlock`, `user passwd`). The server
-- writes `locked_at`/`locked_until` when a username reaches the limit and
-- clears `locked_until` at start (its windows start empty). Whoever lifts a
-- lock clears `locked_until` and sets `unlocked_at`; a server refusing a
-- login as locked reads `unlocked_at` and forgets its window when the unlock
-- came after the lock began. No trigger bumps `auth_generation`: nothing
-- the server caches for authentication lives here.
CREATE TABLE user_locks (
    user_id      TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    locked_at    INTEGER,                     -- Unix ms: the last lock began
    locked_until INTEGER,                     -- Unix ms; NULL once lifted
    unlocked_at  INTEGER                      -- Unix ms: the last unlock
) STRICT;
