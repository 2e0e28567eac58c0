//! The security audit log: typed event kinds, the actor and request facts
//! every event carries, and `record`, which appends to the hash chain
//! (`storage::audit`) before the caller answers. User-supplied text is
//! escaped (CR/LF) and length-capped so an event can never forge lines.

pub mod chain_key;
pub mod csv_export;
pub mod denials;

use serde_json::{Map, Value};

use crate::clock::now_millis;
use crate::storage::audit::{self as store, AuditRow};
use crate::storage::{Storage, StorageError};

/// Longest user-supplied text kept in an audit field.
const MAX_TEXT: usize = 256;

/// Every audit event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A login succeeded.
    LoginSuccess,
    /// A login failed.
    LoginFailure,
    /// A token was revoked (by its owner or an admin).
    Logout,
    /// A request was refused for missing/invalid credentials or role.
    AccessDenied,
    /// A username or IP hit the failure limit.
    AccountLocked,
    /// An admin lifted a lockout early.
    AccountUnlocked,
    /// A user was created.
    UserCreated,
    /// A user's password, roles or status changed.
    UserModified,
    /// A user was deactivated.
    UserDeactivated,
    /// An API key was created.
    ApikeyCreated,
    /// An API key was revoked.
    ApikeyRevoked,
    /// A message was sent back to `pending`.
    MessageRetried,
    /// A database backup was downloaded.
    BackupDownloaded,
    /// A backup was restored (`energyload restore`); the event is the first
    /// one appended to the restored database's chain.
    BackupRestored,
    /// Delivery was paused.
    DeliveryPaused,
    /// Delivery was resumed.
    DeliveryResumed,
    /// A reload (SIGHUP) applied new secrets or TLS certificates.
    ConfigReloaded,
    /// A reload failed; the previous values stay in force.
    ConfigReloadFailed,
    /// Users changed their own password (`POST /user/password`).
    PasswordChanged,
}

impl EventType {
    /// Every event type (the audit filter lists and the OpenAPI enum are
    /// checked against it).
    pub const ALL: [EventType; 19] = [
        Self::LoginSuccess,
        Self::LoginFailure,
        Self::Logout,
        Self::AccessDenied,
        Self::AccountLocked,
        Self::AccountUnlocked,
        Self::UserCreated,
        Self::UserModified,
        Self::UserDeactivated,
        Self::ApikeyCreated,
        Self::ApikeyRevoked,
        Self::MessageRetried,
        Self::BackupDownloaded,
        Self::BackupRestored,
        Self::DeliveryPaused,
        Self::DeliveryResumed,
        Self::ConfigReloaded,
        Self::ConfigReloadFailed,
        Self::PasswordChanged,
    ];

    /// The stored name, as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSuccess => "login_success",
            Self::LoginFailure => "login_failure",
            Self::Logout => "logout",
            Self::AccessDenied => "access_denied",
            Self::AccountLocked => "account_locked",
            Self::AccountUnlocked => "account_unlocked",
            Self::UserCreated => "user_created",
            Self::UserModified => "user_modified",
            Self::UserDeactivated => "user_deactivated",
            Self::ApikeyCreated => "apikey_created",
            Self::ApikeyRevoked => "apikey_revoked",
            Self::MessageRetried => "message_retried",
            Self::BackupDownloaded => "backup_downloaded",
            Self::BackupRestored => "backup_restored",
            Self::DeliveryPaused => "delivery_paused",
            Self::DeliveryResumed => "delivery_resumed",
            Self::ConfigReloaded => "config_reloaded",
            Self::ConfigReloadFailed => "config_reload_failed",
            Self::PasswordChanged => "password_changed",
        }
    }
}

/// Who acted: the authenticated caller, or for login events the account
/// named in the attempt.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// User id, when known.
    pub user_id: Option<String>,
    /// Username, when known.
    pub username: Option<String>,
    /// The API key used, when any.
    pub api_key_id: Option<String>,
}

/// Facts about the request an event happened in.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// Client IP.
    pub ip: Option<String>,
    /// The MSISDN header's value.
    pub msisdn: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Request path (without query).
    pub path: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its type.
    pub kind: EventType,
    /// Who.
    pub actor: Actor,
    /// Where from.
    pub request: RequestFacts,
    /// Event-specific details (e.g. `target_user_id`, `reason`).
    pub detail: Map<String, Value>,
}

impl Event {
    /// A new event with empty detail.
    pub fn new(kind: EventType, actor: Actor, request: RequestFacts) -> Self {
        Self { kind, actor, request, detail: Map::new() }
    }

    /// Adds a detail field; strings are sanitised.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        let value = match value.into() {
            Value::String(s) => Value::String(sanitize(&s)),
            other => other,
        };
        self.detail.insert(key.to_string(), value);
        self
    }

    fn into_row(self) -> AuditRow {
        let clean = |v: Option<String>| v.map(|s| sanitize(&s));
        AuditRow {
            id: 0,
            ts: now_millis(),
            event_type: self.kind.as_str().to_string(),
            ip: self.request.ip,
            msisdn: clean(self.request.msisdn),
            user_id: clean(self.actor.user_id),
            username: clean(self.actor.username),
            api_key_id: self.actor.api_key_id,
            request_id: self.request.request_id,
            path: clean(self.request.path),
            detail: Value::Object(self.detail).to_string(),
        }
    }
}

/// Escapes CR, LF and other control characters and caps the length, so
/// user-supplied text cannot forge log lines or bloat the log.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    for (n, c) in text.chars().enumerate() {
        if n >= MAX_TEXT {
            out.push('…');
            break;
        }
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Appends `event` to the chain; the caller answers only after this
/// succeeds (an event that cannot be written turns the request into `503`).
pub async fn record(storage: &Storage, event: Event) -> Result<(), StorageError> {
    let row = event.into_row();
    storage.run(move |conn| store::append(conn, &row).map(|_| ())).await
}

/// Appends `event` inside the caller's transaction on `conn`, so that a
/// change and its audit event are committed together or not at all.
pub fn record_in(conn: &rusqlite::Connection, event: Event) -> Result<(), StorageError> {
    store::append_in(conn, &event.into_row()).map(|_| ())
}

/// Appends `event` from a blocking context (CLI commands).
pub fn record_blocking(conn: &mut rusqlite::Connection, event: Event) -> Result<(), StorageError> {
    store::append(conn, &event.into_row()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_holds_every_type_once() {
        use EventType as T;
        let mut seen = std::collections::BTreeSet::new();
        for t in T::ALL {
            // Exhaustive: a new variant does not compile here until it is
            // added to this match and, so that the count holds, to `ALL`.
            let index = match t {
                T::LoginSuccess => 0,
                T::LoginFailure => 1,
                T::Logout => 2,
                T::AccessDenied => 3,
                T::AccountLocked => 4,
                T::AccountUnlocked => 5,
                T::UserCreated => 6,
                T::UserModified => 7,
                T::UserDeactivated => 8,
                T::ApikeyCreated => 9,
                T::ApikeyRevoked => 10,
                T::MessageRetried => 11,
                T::BackupDownloaded => 12,
                T::BackupRestored => 13,
                T::DeliveryPaused => 14,
                T::DeliveryResumed => 15,
                T::ConfigReloaded => 16,
                T::ConfigReloadFailed => 17,
                T::PasswordChanged => 18,
            };
            assert!(seen.insert(index), "{} twice in ALL", t.as_str());
        }
        assert_eq!(seen.len(), T::ALL.len());
    }

    #[test]
    fn user_text_cannot_forge_lines_or_grow_unbounded() {
        assert_eq!(sanitize("bob\r\nINFO forged"), "bob\\r\\nINFO forged");
        assert_eq!(sanitize("a\u{1b}[31m"), "a\\u{1b}[31m");
        let long = sanitize(&"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_TEXT + 1);
    }
}
