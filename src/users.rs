//! User management shared by the API and the CLI: create, change, look up,
//! bootstrap the first admin and import the original service's users table.
//! Blocking (runs on a connection); passwords arrive already hashed except in
//! the CLI paths, which hash with the configured settings.

use rusqlite::Connection;
use serde_json::{Value, json};

use crate::auth::passwords::{
    Argon2Settings, MAX_VERIFY_ITERATIONS, MAX_VERIFY_MEMORY_KIB, PasswordError, check_stored_hash,
    hash_password,
};
use crate::clock::{format_millis, now_millis};
use crate::config::Config;
use crate::domain::user::{NewPassword, Role, Roles, UserStatus, UserValueError, Username};
use crate::storage::StorageError;
use crate::storage::identity::{self as store, UserRecord};

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A value is not acceptable (message safe to show).
    #[error("{0}")]
    Invalid(#[from] UserValueError),
    /// The username exists.
    #[error("username already exists")]
    Conflict {
        /// The existing user's id.
        existing_id: String,
    },
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Changes to apply to a user.
#[derive(Debug, Default)]
pub struct UserChanges {
    /// A new password hash.
    pub password_hash: Option<String>,
    /// New roles.
    pub roles: Option<Roles>,
    /// New status.
    pub status: Option<UserStatus>,
}

/// The JSON view of a user (never the hash).
pub fn view(u: &UserRecord) -> Value {
    let roles: Vec<&str> = u.roles.split(',').filter(|r| !r.is_empty()).collect();
    json!({
        "id": u.id, "username": u.username, "roles": roles, "status": u.status,
        "created_at": format_millis(u.created_at), "updated_at": format_millis(u.updated_at),
        "locked_until": lock_in_force(u, now_millis()).map(format_millis),
    })
}

/// The end of user `u`'s username lock if it is in force at `now` (Unix ms).
pub fn lock_in_force(u: &UserRecord, now: i64) -> Option<i64> {
    u.locked_until.filter(|until| *until > now)
}

/// Lifts user `id`'s lock (see [`store::lift_lock`]): a running server lets
/// the next login of the user through its lockout. Returns whether a
/// recorded lock was in force. Run it in the transaction of the change that
/// lifts it (unlock, password change) together with its audit event.
pub fn lift_lock(conn: &Connection, id: &str) -> Result<bool, UserError> {
    Ok(store::lift_lock(conn, id, now_millis())?)
}

/// Creates a user; returns its record.
pub fn create(
    conn: &Connection,
    username: &Username,
    password_hash: String,
    roles: &Roles,
    creator: Option<&str>,
) -> Result<UserRecord, UserError> {
    create_with_id(
        conn,
        uuid::Uuid::new_v4().to_string(),
        username,
        password_hash,
        roles,
        UserStatus::Active,
        creator,
    )
}

fn create_with_id(
    conn: &Connection,
    id: String,
    username: &Username,
    password_hash: String,
    roles: &Roles,
    status: UserStatus,
    creator: Option<&str>,
) -> Result<UserRecord, UserError> {
    let now = now_millis();
    let record = UserRecord {
        id,
        username: username.as_str().to_string(),
        password_hash,
        roles: roles.to_list(),
        status: status.as_str().to_string(),
        creator: creator.map(str::to_string),
        created_at: now,
        updated_at: now,
        locked_until: None,
    };
    match store::insert_user(conn, &record)? {
        Ok(()) => Ok(record),
        Err(existing_id) => Err(UserError::Conflict { existing_id }),
    }
}

/// Applies `changes` to user `id`; returns the updated record.
pub fn update(conn: &Connection, id: &str, changes: UserChanges) -> Result<UserRecord, UserError> {
    let mut u = store::user_by_id(conn, id)?.ok_or(UserError::NotFound)?;
    if let Some(h) = changes.password_hash {
        u.password_hash = h;
    }
    if let Some(r) = changes.roles {
        u.roles = r.to_list();
    }
    if let Some(s) = changes.status {
        u.status = s.as_str().to_string();
    }
    u.updated_at = now_millis();
    store::update_user(conn, &u)?;
    Ok(u)
}

/// Ends the sessions of user `id` after a password change: every live token
/// except `keep` (the caller's own token when users change their own
/// password; `None` for an admin's reset or `user passwd`). `by` is who did
/// it (user id), recorded on the revoked rows. Run it in the transaction that
/// changes the password, so both hold or neither does. Returns how many
/// sessions ended.
pub fn end_sessions_after_password_change(
    conn: &Connection,
    id: &str,
    keep: Option<&str>,
    by: Option<&str>,
) -> Result<usize, UserError> {
    Ok(store::revoke_user_sessions(conn, id, keep, by, now_millis())?)
}

/// Checks a new password of user `username` against the length and strength
/// rules and hashes it with the configured settings (CLI paths).
pub fn hash_new_password(config: &Config, username: &str, raw: String) -> Result<String, UserError> {
    let password = NewPassword::parse_new(raw, &config.auth.password_rules(), &[username])?;
    let a = &config.auth;
    let settings = Argon2Settings::new(a.argon2_memory_kib, a.argon2_iterations, a.argon2_parallelism)
        .map_err(|e| UserError::Hash(e.to_string()))?;
    hash_password(&password, &settings).map_err(|e| UserError::Hash(e.to_string()))
}

/// Creates `auth.bootstrap_admin` with its configured password when no
/// active admin exists yet. There is never a default password.
pub fn bootstrap_admin(conn: &mut Connection, config: &Config) -> Result<(), String> {
    let (Some(name), Some(password)) = (&config.auth.bootstrap_admin, &config.auth.bootstrap_admin_password)
    else {
        return Ok(());
    };
    let users = store::all_users(conn).map_err(|e| e.to_string())?;
    let has_admin = users.iter().any(|u| u.status == "active" && u.roles.split(',').any(|r| r == "admin"));
    if has_admin {
        return Ok(());
    }
    let username = Username::parse(name).map_err(|e| e.to_string())?;
    let hash = hash_new_password(config, username.as_str(), password.expose().to_string())
        .map_err(|e| e.to_string())?;
    let record = create(conn, &username, hash, &Roles::single(Role::Admin), Some("bootstrap"))
        .map_err(|e| e.to_string())?;
    let event = crate::audit::Event::new(
        crate::audit::EventType::UserCreated,
        crate::audit::Actor::default(),
        crate::audit::RequestFacts::default(),
    )
    .with("target_user_id", record.id.clone())
    .with("via", "bootstrap");
    crate::audit::record_blocking(conn, event).map_err(|e| e.to_string())?;
    tracing::info!(username = %username, "created the bootstrap admin");
    Ok(())
}

/// One imported row's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Created.
    Created(String),
    /// Skipped: the username or id exists.
    Exists(String),
}

/// Imports the original service's users export
/// (`id,username,password,type,creator,status`): ids and argon2 PHC hashes
/// kept as they are, `type` mapped to roles (`e_sight` → `esight`). Every
/// row is checked before any is stored: a hash that is not argon2, or costs
/// more than login verifies ([`check_stored_hash`]), refuses the whole file
/// with a message naming the line and the cap.
pub fn import_csv(conn: &Connection, text: &str) -> Result<Vec<ImportOutcome>, String> {
    let mut lines = csv_records(text)?.into_iter();
    let header = lines.next().ok_or("the file is empty")?;
    let expected = ["id", "username", "password", "type", "creator", "status"];
    if header.iter().map(String::as_str).collect::<Vec<_>>() != expected {
        return Err(format!("expected the header {}", expected.join(",")));
    }
    let mut rows = Vec::new();
    for (n, row) in lines.enumerate() {
        let line = n + 2;
        let [id, username, hash, kind, creator, status] = row.as_slice() else {
            return Err(format!("line {line}: expected 6 fields"));
        };
        let username = Username::parse(username).map_err(|e| format!("line {line}: {e}"))?;
        let roles = Roles::parse_legacy_list(kind).map_err(|e| format!("line {line}: {e}"))?;
        let status = UserStatus::parse(status).map_err(|e| format!("line {line}: {e}"))?;
        match check_stored_hash(hash) {
            Ok(()) => {}
            Err(PasswordError::TooCostly) => {
                return Err(format!(
                    "line {line}: the password hash costs more than this server verifies \
                     (at most m={MAX_VERIFY_MEMORY_KIB} KiB, t={MAX_VERIFY_ITERATIONS}); \
                     that user could never log in"
                ));
            }
            Err(_) => return Err(format!("line {line}: the password is not an argon2 PHC hash")),
        }
        rows.push((line, id.clone(), username, hash.clone(), roles, status, creator.clone()));
    }
    let mut out = Vec::new();
    for (line, id, username, hash, roles, status, creator) in rows {
        if store::user_by_id(conn, &id).map_err(|e| e.to_string())?.is_some() {
            out.push(ImportOutcome::Exists(username.as_str().to_string()));
            continue;
        }
        match create_with_id(conn, id, &username, hash, &roles, status, Some(&creator)) {
            Ok(r) => out.push(ImportOutcome::Created(r.username)),
            Err(UserError::Conflict { .. }) => out.push(ImportOutcome::Exists(username.as_str().to_string())),
            Err(e) => return Err(format!("line {line}: {e}")),
        }
    }
    Ok(out)
}

/// Splits CSV text into records with the `csv` crate (RFC 4180 quoting,
/// CRLF or LF, a leading UTF-8 BOM ignored); records of only empty fields
/// are skipped. Field counts are checked by the caller, which names the line.
fn csv_records(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("not a CSV file: {e}"))?;
        if record.iter().any(|f| !f.is_empty()) {
            records.push(record.iter().map(str::to_string).collect());
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_is_honoured() {
        let r = csv_records("\u{feff}a,b\n\"x,y\",\"say \"\"hi\"\"\"\r\n\n,\n\"multi\nline\",z").unwrap();
        assert_eq!(r, vec![vec!["a", "b"], vec!["x,y", "say \"hi\""], vec!["multi\nline", "z"]]);
    }
}
