//! Typed queries on `users` (with their recorded lock, `user_locks`),
//! `api_keys` and `sessions`. Records carry plain column values; the auth
//! layer turns them into domain types.

use rusqlite::{Connection, OptionalExtension, params};

use super::StorageError;

/// A `users` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// User id (UUID; legacy ids kept as imported).
    pub id: String,
    /// Unique (case-insensitive) username.
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Comma-separated role names.
    pub roles: String,
    /// `active` or `deactivated`.
    pub status: String,
    /// Who created the user (user id or `cli`/`import`).
    pub creator: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Unix ms: the end of the last username lock the server recorded
    /// (`user_locks`), `None` once lifted; it may lie in the past.
    pub locked_until: Option<i64>,
}

/// The users' columns and their recorded lock's end.
const USER_COLUMNS: &str = "SELECT users.*, user_locks.locked_until FROM users LEFT JOIN user_locks ON user_locks.user_id = users.id";

fn user_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get("id")?,
        username: r.get("username")?,
        password_hash: r.get("password_hash")?,
        roles: r.get("roles")?,
        status: r.get("status")?,
        creator: r.get("creator")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        locked_until: r.get("locked_until")?,
    })
}

/// Inserts a user; `Ok(Err(existing_id))` when the username is taken.
pub fn insert_user(conn: &Connection, u: &UserRecord) -> Result<Result<(), String>, StorageError> {
    if let Some(existing) = user_by_name(conn, &u.username)? {
        return Ok(Err(existing.id));
    }
    conn.execute(
        "INSERT INTO users (id, username, password_hash, roles, status, creator, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![u.id, u.username, u.password_hash, u.roles, u.status, u.creator, u.created_at, u.updated_at],
    )?;
    Ok(Ok(()))
}

/// Replaces the mutable fields of a user (password hash, roles, status).
pub fn update_user(conn: &Connection, u: &UserRecord) -> Result<bool, StorageError> {
    let n = conn.execute(
        "UPDATE users SET password_hash = ?2, roles = ?3, status = ?4, updated_at = ?5 WHERE id = ?1",
        params![u.id, u.password_hash, u.roles, u.status, u.updated_at],
    )?;
    Ok(n == 1)
}

/// A user by id.
pub fn user_by_id(conn: &Connection, id: &str) -> Result<Option<UserRecord>, StorageError> {
    let sql = format!("{USER_COLUMNS} WHERE users.id = ?1");
    Ok(conn.query_row(&sql, [id], user_from).optional()?)
}

/// A user by username (case-insensitive).
pub fn user_by_name(conn: &Connection, username: &str) -> Result<Option<UserRecord>, StorageError> {
    let sql = format!("{USER_COLUMNS} WHERE users.username = ?1");
    Ok(conn.query_row(&sql, [username], user_from).optional()?)
}

/// All users, oldest first.
pub fn all_users(conn: &Connection) -> Result<Vec<UserRecord>, StorageError> {
    let mut stmt = conn.prepare(&format!("{USER_COLUMNS} ORDER BY users.created_at, users.id"))?;
    let rows = stmt.query_map([], user_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records that the server locked user `user_id`'s username at `at` until
/// `until` (Unix ms). The unlock marker stays as it was.
pub fn record_lock(conn: &Connection, user_id: &str, at: i64, until: i64) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO user_locks (user_id, locked_at, locked_until) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id) DO UPDATE SET locked_at = excluded.locked_at, locked_until = excluded.locked_until",
        params![user_id, at, until],
    )?;
    Ok(())
}

/// Lifts user `user_id`'s lock at `now` (Unix ms): the recorded end is
/// cleared and the unlock marker set, also when no lock was recorded (a
/// server whose window locked the user just now reads the marker). Returns
/// whether a recorded lock was still in force.
pub fn lift_lock(conn: &Connection, user_id: &str, now: i64) -> Result<bool, StorageError> {
    let until: Option<i64> = conn
        .query_row("SELECT locked_until FROM user_locks WHERE user_id = ?1", [user_id], |r| r.get(0))
        .optional()?
        .flatten();
    conn.execute(
        "INSERT INTO user_locks (user_id, unlocked_at) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET locked_until = NULL, unlocked_at = excluded.unlocked_at",
        params![user_id, now],
    )?;
    Ok(until.is_some_and(|u| u > now))
}

/// When user `user_id`'s lock was last lifted (Unix ms), if ever.
pub fn lock_lifted_at(conn: &Connection, user_id: &str) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .query_row("SELECT unlocked_at FROM user_locks WHERE user_id = ?1", [user_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Clears every recorded lock's end (a starting server's windows are
/// empty, so no username is locked); unlock markers stay. Returns how many.
pub fn forget_locks(conn: &Connection) -> Result<usize, StorageError> {
    Ok(conn.execute("UPDATE user_locks SET locked_until = NULL WHERE locked_until IS NOT NULL", [])?)
}

/// An `api_keys` row (never the key itself).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Visible prefix of the key, for recognising it.
    pub prefix: String,
    /// SHA-256 of the key.
    pub key_hash: Vec<u8>,
    /// Creator's user id (or `cli`).
    pub created_by: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, if the key expires.
    pub expires_at: Option<i64>,
    /// Unix ms, once revoked.
    pub revoked_at: Option<i64>,
    /// Unix ms of last use (flushed periodically).
    pub last_used_at: Option<i64>,
    /// Requests per second allowed, if limited.
    pub rate_per_sec: Option<f64>,
    /// Burst size, if limited.
    pub burst: Option<i64>,
}

fn key_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        prefix: r.get("prefix")?,
        key_hash: r.get("key_hash")?,
        created_by: r.get("created_by")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        revoked_at: r.get("revoked_at")?,
        last_used_at: r.get("last_used_at")?,
        rate_per_sec: r.get("rate_per_sec")?,
        burst: r.get("burst")?,
    })
}

/// Inserts an API key.
pub fn insert_api_key(conn: &Connection, k: &ApiKeyRecord) -> Result<(), StorageError> {
    let inserted = conn.execute(
        "INSERT INTO api_keys (id, name, prefix, key_hash, created_by, created_at, expires_at,
                               revoked_at, last_used_at, rate_per_sec, burst)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            k.id,
            k.name,
            k.prefix,
            k.key_hash,
            k.created_by,
            k.created_at,
            k.expires_at,
            k.revoked_at,
            k.last_used_at,
            k.rate_per_sec,
            k.burst
        ],
    );
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_active_name_conflict(&e) => {
            let (existing_id, name) = conn
                .query_row(
                    "SELECT id, name FROM api_keys WHERE name = ?1 COLLATE NOCASE AND revoked_at IS NULL",
                    [&k.name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .unwrap_or_else(|| (String::new(), k.name.clone()));
            Err(StorageError::ApiKeyNameTaken { name, existing_id })
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `e` is the unique index `api_keys_active_name` refusing a second
/// active key with the same name (not the key hash's uniqueness).
fn is_active_name_conflict(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(message))
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE && message.ends_with("api_keys.name"))
}

/// Revokes every active key named `name` (ignoring ASCII case); returns how
/// many. For the demo, which makes a new `demo` key at every start.
pub fn revoke_api_keys_named(conn: &Connection, name: &str, now: i64) -> Result<usize, StorageError> {
    Ok(conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 COLLATE NOCASE AND revoked_at IS NULL",
        params![name, now],
    )?)
}

/// All API keys, newest first.
pub fn all_api_keys(conn: &Connection) -> Result<Vec<ApiKeyRecord>, StorageError> {
    let mut stmt = conn.prepare("SELECT * FROM api_keys ORDER BY created_at DESC, id")?;
    let rows = stmt.query_map([], key_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a key; `false` when there is no such key.
pub fn revoke_api_key(conn: &Connection, id: &str, now: i64) -> Result<bool, StorageError> {
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
        params![id, now],
    )?;
    Ok(n == 1)
}

/// Records last-use times gathered in memory (one write for many requests).
pub fn touch_api_keys(conn: &mut Connection, used: &[(String, i64)]) -> Result<(), StorageError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
        )?;
        for (id, at) in used {
            stmt.execute(params![id, at])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// A `sessions` row: one issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The token's `jti`.
    pub jti: String,
    /// Its user.
    pub user_id: String,
    /// Unix ms.
    pub issued_at: i64,
    /// Unix ms.
    pub expires_at: i64,
    /// Client IP at login.
    pub ip: Option<String>,
    /// Client user agent at login.
    pub user_agent: Option<String>,
    /// Unix ms, once revoked.
    pub revoked_at: Option<i64>,
    /// Who revoked it (user id).
    pub revoked_by: Option<String>,
}

fn session_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        jti: r.get("jti")?,
        user_id: r.get("user_id")?,
        issued_at: r.get("issued_at")?,
        expires_at: r.get("expires_at")?,
        ip: r.get("ip")?,
        user_agent: r.get("user_agent")?,
        revoked_at: r.get("revoked_at")?,
        revoked_by: r.get("revoked_by")?,
    })
}

/// Records an issued token.
pub fn insert_session(conn: &Connection, s: &SessionRecord) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO sessions (jti, user_id, issued_at, expires_at, ip, user_agent, revoked_at, revoked_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![s.jti, s.user_id, s.issued_at, s.expires_at, s.ip, s.user_agent, s.revoked_at, s.revoked_by],
    )?;
    Ok(())
}

/// Revokes one token; returns the session as it was, if it exists.
pub fn revoke_session(
    conn: &Connection,
    jti: &str,
    by: Option<&str>,
    now: i64,
) -> Result<Option<SessionRecord>, StorageError> {
    let found = conn.query_row("SELECT * FROM sessions WHERE jti = ?1", [jti], session_from).optional()?;
    if found.as_ref().is_some_and(|s| s.revoked_at.is_none()) {
        conn.execute(
            "UPDATE sessions SET revoked_at = ?2, revoked_by = ?3 WHERE jti = ?1",
            params![jti, now, by],
        )?;
    }
    Ok(found)
}

/// Revokes every live (unrevoked, unexpired) session of a user except the one
/// with `except_jti` (the caller's own, when a user changes their password);
/// returns how many were revoked. The `sessions_revoked` trigger bumps
/// `auth_generation`, so a running server drops them from memory within a
/// second even when this runs in another process (the CLI).
pub fn revoke_user_sessions(
    conn: &Connection,
    user_id: &str,
    except_jti: Option<&str>,
    by: Option<&str>,
    now: i64,
) -> Result<usize, StorageError> {
    Ok(conn.execute(
        "UPDATE sessions SET revoked_at = ?3, revoked_by = ?4
         WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?3 AND jti IS NOT ?2",
        params![user_id, except_jti, now, by],
    )?)
}

/// Live (unexpired, unrevoked) sessions of a user, newest first.
pub fn live_sessions(conn: &Connection, user_id: &str, now: i64) -> Result<Vec<SessionRecord>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT * FROM sessions WHERE user_id = ?1 AND expires_at > ?2 AND revoked_at IS NULL
         ORDER BY issued_at DESC",
    )?;
    let rows = stmt.query_map(params![user_id, now], session_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `jti`s of revoked tokens that have not expired yet (the in-memory
/// revocation set).
pub fn revoked_unexpired(conn: &Connection, now: i64) -> Result<Vec<(String, i64)>, StorageError> {
    let mut stmt = conn
        .prepare("SELECT jti, expires_at FROM sessions WHERE revoked_at IS NOT NULL AND expires_at > ?1")?;
    let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes sessions that expired before `before` (tokens past `exp` are
/// refused anyway); returns how many.
pub fn purge_expired_sessions(conn: &Connection, before: i64) -> Result<usize, StorageError> {
    Ok(conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [before])?)
}

/// Runs `read` in one read transaction, so the auth generation and the rows
/// it reads are of one moment (a CLI commit in between cannot pair an old
/// generation with new rows, or the other way round).
pub fn read_consistently<T>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let tx = conn.unchecked_transaction()?;
    let out = read(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// The counter bumped by triggers on every cached identity change.
pub fn auth_generation(conn: &Connection) -> Result<i64, StorageError> {
    let v: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'auth_generation'", [], |r| r.get(0))?;
    Ok(v.parse().unwrap_or(0))
}
