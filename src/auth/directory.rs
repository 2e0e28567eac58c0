//! The in-memory identity directory: users, usable API keys and revoked
//! token ids, loaded from the database and reloaded whenever the database's
//! `auth_generation` counter moves (triggers bump it on every change, also
//! from CLI commands on the same data directory). The request path reads only
//! this, never the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::api_keys::KeyHash;
use super::rate_limit::RateLimiter;
use crate::domain::user::{Roles, UserStatus};
use crate::storage::StorageError;
use crate::storage::identity::{self as store, UserRecord};

/// A user as the guard and login see it.
#[derive(Debug, Clone)]
pub struct CachedUser {
    /// User id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Current roles (authoritative, not the token's).
    pub roles: Roles,
    /// Active or deactivated.
    pub status: UserStatus,
    /// The argon2 PHC string, for login.
    pub password_hash: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// `created_at` as RFC 3339 text, formatted once when the user is
    /// loaded (`GET /user` answers with it on the light path).
    pub created_at_text: String,
    /// `updated_at` as RFC 3339 text, formatted once when loaded.
    pub updated_at_text: String,
}

/// A usable API key.
#[derive(Debug, Clone)]
pub struct CachedKey {
    /// Key id.
    pub id: String,
    /// Expiry (Unix ms).
    pub expires_at: Option<i64>,
    /// Its rate limiter, if limited.
    pub limiter: Option<Arc<RateLimiter>>,
}

/// Default rate limit for keys without their own: (per second, burst).
pub type DefaultRate = Option<(f64, u32)>;

#[derive(Default)]
struct Snapshot {
    users: HashMap<String, Arc<CachedUser>>,
    by_name: HashMap<String, String>,
    keys: HashMap<KeyHash, CachedKey>,
    revoked: HashMap<String, i64>,
}

/// The directory, shared by every request.
pub struct Directory {
    snapshot: RwLock<Snapshot>,
    generation: AtomicI64,
    default_rate: DefaultRate,
    key_uses: Mutex<HashMap<String, i64>>,
    /// Paces the generation reads of logins for unknown names and of unknown API keys.
    on_demand: IntervalGate,
}

/// The least time between two on-demand generation reads
/// ([`Directory::claim_on_demand_check`]): unknown-name logins and unknown
/// API keys cannot make the database busy, whatever their rate (at most a
/// hundred one-row reads a second); a check that found a change opens the
/// gate again at once ([`Directory::refresh_on_demand`]).
pub const ON_DEMAND_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// Lets one caller through per interval; the others are told no (they do
/// not wait).
struct IntervalGate {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl IntervalGate {
    fn new(interval: Duration) -> Self {
        Self { interval, last: Mutex::new(None) }
    }

    /// True for the first call, then for the first call at least `interval`
    /// after the last one that got true.
    fn pass(&self, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Lets the next call through at once.
    fn reopen(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Directory {
    /// Loads everything from `conn`.
    pub fn load(conn: &Connection, default_rate: DefaultRate) -> Result<Self, StorageError> {
        let dir = Self {
            snapshot: RwLock::new(Snapshot::default()),
            generation: AtomicI64::new(-1),
            default_rate,
            key_uses: Mutex::new(HashMap::new()),
            on_demand: IntervalGate::new(ON_DEMAND_CHECK_INTERVAL),
        };
        dir.reload(conn)?;
        Ok(dir)
    }

    /// Reloads if the database changed since the last load; true if it did.
    pub fn refresh(&self, conn: &Connection) -> Result<bool, StorageError> {
        if store::auth_generation(conn)? == self.generation.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.reload(conn)?;
        Ok(true)
    }

    /// Whether a login for a name (or a request with an API key) this
    /// directory does not know may read the
    /// auth generation now (then [`Directory::refresh`]): true at most once
    /// per [`ON_DEMAND_CHECK_INTERVAL`], so a user just added by the CLI can
    /// log in at once, without housekeeping's next tick, while a flood of
    /// unknown names or made-up keys reads the database at most a hundred
    /// times a second.
    pub fn claim_on_demand_check(&self) -> bool {
        self.on_demand.pass(Instant::now())
    }

    /// [`Directory::refresh`] for a caller that passed
    /// [`Directory::claim_on_demand_check`]. When it found a change, the
    /// gate opens again at once: a script that makes keys or users with the
    /// CLI and uses each at once (a CLI command can take under 10 ms) finds
    /// every one, while checks that find nothing new (made-up keys, unknown
    /// names) stay paced.
    pub fn refresh_on_demand(&self, conn: &Connection) -> Result<bool, StorageError> {
        let changed = self.refresh(conn)?;
        if changed {
            self.on_demand.reopen();
        }
        Ok(changed)
    }

    /// Reloads unconditionally (after this process changed something).
    ///
    /// Reloads may run at once (housekeeping's tick, an on-demand check, a
    /// handler after its own change): each reads one consistent moment, and
    /// one that read an older generation than the snapshot already in place
    /// leaves it alone, so a slow reload can never put back a directory
    /// without a key or user that a faster one just loaded.
    pub fn reload(&self, conn: &Connection) -> Result<(), StorageError> {
        store::read_consistently(conn, |conn| self.reload_from(conn))
    }

    fn reload_from(&self, conn: &Connection) -> Result<(), StorageError> {
        let generation = store::auth_generation(conn)?;
        let now = crate::clock::now_millis();
        let mut next = Snapshot::default();
        for u in store::all_users(conn)? {
            if let Some(user) = cached_user(u) {
                next.by_name.insert(user.username.to_lowercase(), user.id.clone());
                next.users.insert(user.id.clone(), Arc::new(user));
            }
        }
        let previous = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        for k in store::all_api_keys(conn)? {
            if k.revoked_at.is_some() || k.expires_at.is_some_and(|e| e <= now) {
                continue;
            }
            let Ok(hash) = KeyHash::from_hex(&hex::encode(&k.key_hash)) else { continue };
            let rate = match (k.rate_per_sec, k.burst) {
                (Some(r), b) if r > 0.0 => Some((r, b.map_or(r.ceil() as u32, |b| b.max(1) as u32))),
                (Some(_), _) => None,
                (None, _) => self.default_rate,
            };
            // Keep a key's bucket across reloads so a reload never refills it.
            let kept =
                previous.keys.get(&hash).and_then(|c| c.limiter.clone()).filter(|l| Some(l.rate()) == rate);
            let limiter = kept.or_else(|| rate.map(|(r, b)| Arc::new(RateLimiter::new(r, b))));
            next.keys.insert(hash, CachedKey { id: k.id, expires_at: k.expires_at, limiter });
        }
        drop(previous);
        next.revoked = store::revoked_unexpired(conn, now)?.into_iter().collect();
        let mut current = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        if generation >= self.generation.load(Ordering::Acquire) {
            *current = next;
            self.generation.store(generation, Ordering::Release);
        }
        Ok(())
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Option<Arc<CachedUser>> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).users.get(id).cloned()
    }

    /// A user by username (case-insensitive).
    pub fn user_by_name(&self, username: &str) -> Option<Arc<CachedUser>> {
        let s = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        s.by_name.get(&username.to_lowercase()).and_then(|id| s.users.get(id)).cloned()
    }

    /// A usable key by the hash of what was presented.
    pub fn key(&self, hash: &KeyHash) -> Option<CachedKey> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).keys.get(hash).cloned()
    }

    /// True when the token id was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).revoked.contains_key(jti)
    }

    /// Marks a token revoked at once (its row is written by the caller).
    pub fn revoke(&self, jti: &str, expires_at: i64) {
        self.snapshot.write().unwrap_or_else(|e| e.into_inner()).revoked.insert(jti.to_string(), expires_at);
    }

    /// Notes that a key was used now; written to the database in batches.
    pub fn note_key_use(&self, key_id: &str, now: i64) {
        let mut uses = self.key_uses.lock().unwrap_or_else(|e| e.into_inner());
        match uses.get_mut(key_id) {
            Some(at) => *at = now,
            None => {
                uses.insert(key_id.to_string(), now);
            }
        }
    }

    /// Takes the key uses noted since the last call.
    pub fn take_key_uses(&self) -> Vec<(String, i64)> {
        std::mem::take(&mut *self.key_uses.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect()
    }
}

fn cached_user(u: UserRecord) -> Option<CachedUser> {
    let roles = Roles::parse_list(&u.roles).ok();
    let status = UserStatus::parse(&u.status).ok();
    match (roles, status) {
        (Some(roles), Some(status)) => Some(CachedUser {
            id: u.id,
            username: u.username,
            roles,
            status,
            password_hash: u.password_hash,
            created_at: u.created_at,
            updated_at: u.updated_at,
            created_at_text: crate::clock::format_millis(u.created_at),
            updated_at_text: crate::clock::format_millis(u.updated_at),
        }),
        _ => {
            tracing::warn!(user_id = %u.id, "skipping a user row with unknown roles or status");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_on_demand_gate_lets_one_check_through_per_interval() {
        let gate = IntervalGate::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert!(gate.pass(t0));
        for ms in [0, 1, 50, 99] {
            assert!(!gate.pass(t0 + Duration::from_millis(ms)), "{ms} ms after a check");
        }
        assert!(gate.pass(t0 + Duration::from_millis(100)));
        assert!(!gate.pass(t0 + Duration::from_millis(150)), "counted from the last check that passed");
        assert!(gate.pass(t0 + Duration::from_millis(200)));
        gate.reopen();
        assert!(gate.pass(t0 + Duration::from_millis(201)), "reopened: through at once");
        assert!(!gate.pass(t0 + Duration::from_millis(202)), "then paced again");
    }
}
