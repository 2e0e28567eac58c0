//! Typed queries on the append-only, chained `audit_events` table.
//!
//! Each row stores `prev_hash` (the previous row's `hash`) and its own
//! `hash` over `prev_hash ‖ id ‖ ts ‖ fields…`, every text field
//! length-prefixed so no two rows serialise alike:
//!
//! - from the switch point on, `hash = HMAC-SHA256(key, …)` with the
//!   [`ChainKey`] kept outside the database (`<data_dir>/audit-chain.key`),
//!   so whoever can write the database cannot recompute the chain;
//! - before it (events written by a binary older than schema version 4),
//!   `hash = SHA-256(…)`, the legacy rule, still verified as such.
//!
//! The switch point is `meta('audit_keyed_from')`, the first event id that
//! must be keyed (written by migration 4). Raising it would let a forger
//! pass off rewritten events as legacy ones, so an event also counts as
//! keyed when it is dated at or after the key's creation (a fact kept in
//! the key file, outside the database); a missing switch point means the
//! whole chain is keyed. Pruning deletes the oldest rows and records the
//! last deleted hash as `meta('audit_anchor')`, so the remaining chain still
//! verifies from its first row. Cutting the newest rows, or all of them, is
//! only visible against a head recorded elsewhere (`energyload audit head`).

use hmac::Mac;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::StorageError;
use crate::audit::chain_key::ChainKey;

/// One audit event as stored (without its chain hashes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditRow {
    /// Row id (assigned on append).
    pub id: i64,
    /// Unix milliseconds.
    pub ts: i64,
    /// Event type, e.g. `login_failure`.
    pub event_type: String,
    /// Client IP.
    pub ip: Option<String>,
    /// Caller's MSISDN header.
    pub msisdn: Option<String>,
    /// Actor's user id.
    pub user_id: Option<String>,
    /// Actor's username.
    pub username: Option<String>,
    /// API key used.
    pub api_key_id: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Request path.
    pub path: Option<String>,
    /// Event-specific details, a JSON object as text.
    pub detail: String,
}

/// Why verification stopped at a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakReason {
    /// Its `prev_hash` is not the previous row's hash (or the anchor): a row
    /// before it was deleted, inserted or changed its hash.
    NotLinked,
    /// Its hash matches neither its contents under the key nor (where
    /// allowed) the legacy rule: the row was altered.
    Altered,
    /// It carries a plain SHA-256 hash where the chain is keyed: the row was
    /// rewritten and the chain recomputed without the key.
    Unkeyed,
    /// It must be keyed but the key file is missing from the data directory.
    KeyMissing,
}

impl BreakReason {
    /// A stable name for the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotLinked => "not_linked",
            Self::Altered => "altered",
            Self::Unkeyed => "unkeyed",
            Self::KeyMissing => "key_missing",
        }
    }

    /// One sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotLinked => {
                "its prev_hash is not the previous event's hash (an event was deleted or inserted)"
            }
            Self::Altered => "its hash does not match its contents (the event was altered)",
            Self::Unkeyed => {
                "it carries a plain SHA-256 hash where the chain is keyed (rewritten without the key)"
            }
            Self::KeyMissing => "it is keyed but the audit chain key file is missing from the data directory",
        }
    }
}

/// The first row that does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenLink {
    /// Its id.
    pub id: i64,
    /// Why.
    pub reason: BreakReason,
}

/// The newest event of the chain (or, when every event was pruned, the
/// anchor left by pruning): what to record elsewhere to detect truncation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Its id.
    pub id: i64,
    /// Its time (Unix ms); `None` for an anchor.
    pub ts: Option<i64>,
    /// Its stored hash (HMAC-SHA256 or, before the switch, SHA-256).
    pub hash: Vec<u8>,
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Rows checked.
    pub checked: u64,
    /// The first row that does not verify, if any.
    pub first_broken: Option<BrokenLink>,
    /// The first id that must be keyed (the switch point).
    pub keyed_from: i64,
    /// The chain's head (newest row), `None` when it never had one.
    pub head: Option<ChainHead>,
}

/// The `prev_hash` of the first event of a chain that was never pruned.
pub const GENESIS: [u8; 32] = [0; 32];

/// Feeds the row's canonical bytes (after the previous hash) to `update`.
fn feed(update: &mut dyn FnMut(&[u8]), prev: &[u8], row: &AuditRow) {
    update(prev);
    update(&row.id.to_be_bytes());
    update(&row.ts.to_be_bytes());
    let texts = [
        Some(&row.event_type),
        row.ip.as_ref(),
        row.msisdn.as_ref(),
        row.user_id.as_ref(),
        row.username.as_ref(),
        row.api_key_id.as_ref(),
        row.request_id.as_ref(),
        row.path.as_ref(),
        Some(&row.detail),
    ];
    for t in texts {
        match t {
            Some(s) => {
                update(&(s.len() as u32).to_be_bytes());
                update(s.as_bytes());
            }
            None => update(&u32::MAX.to_be_bytes()),
        }
    }
}

/// The LEGACY (unkeyed) link of events before the switch point: SHA-256
/// over the previous row's hash, the row's id and timestamp and its
/// length-prefixed text fields. Anyone can compute it; kept only to verify
/// chains written by older binaries.
pub fn chain_hash(prev: &[u8], row: &AuditRow) -> [u8; 32] {
    let mut h = Sha256::new();
    feed(&mut |b| h.update(b), prev, row);
    h.finalize().into()
}

/// The keyed link every new event carries: HMAC-SHA256 under `key` over the
/// same bytes as [`chain_hash`].
pub fn chain_mac(key: &ChainKey, prev: &[u8], row: &AuditRow) -> [u8; 32] {
    let mut m = key.mac();
    feed(&mut |b| m.update(b), prev, row);
    m.finalize().into_bytes().into()
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StorageError> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

fn anchor(conn: &Connection) -> Result<Vec<u8>, StorageError> {
    let hex_anchor = meta(conn, "audit_anchor")?;
    Ok(hex_anchor.and_then(|h| hex::decode(h).ok()).unwrap_or_else(|| GENESIS.to_vec()))
}

fn anchor_id(conn: &Connection) -> Result<i64, StorageError> {
    Ok(meta(conn, "audit_anchor_id")?.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// The switch point; without one (never written, or deleted) every event
/// must be keyed.
fn keyed_from(conn: &Connection) -> Result<i64, StorageError> {
    Ok(meta(conn, "audit_keyed_from")?.and_then(|v| v.parse().ok()).unwrap_or(i64::MIN))
}

/// The key of the database `conn` is open on, loaded or created in its data
/// directory.
fn key_for(conn: &Connection) -> Result<std::sync::Arc<ChainKey>, StorageError> {
    let path = conn.path().unwrap_or_default();
    ChainKey::for_database(std::path::Path::new(path))
}

/// Appends one event in its own immediate transaction; returns its id.
pub fn append(conn: &mut Connection, row: &AuditRow) -> Result<i64, StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = append_in(&tx, row)?;
    tx.commit()?;
    Ok(id)
}

/// Appends one event inside the caller's immediate transaction, so that it
/// commits (or rolls back) together with the change it records. The event is
/// keyed with the data directory's chain key (created on first use).
pub fn append_in(tx: &Connection, row: &AuditRow) -> Result<i64, StorageError> {
    let key = key_for(tx)?;
    append_keyed(tx, row, &key)
}

/// [`append_in`] with an explicit key.
pub fn append_keyed(tx: &Connection, row: &AuditRow, key: &ChainKey) -> Result<i64, StorageError> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (id, prev) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (anchor_id(tx)? + 1, anchor(tx)?),
    };
    let stored = AuditRow { id, ..row.clone() };
    let hash = chain_mac(key, &prev, &stored);
    tx.prepare_cached(
        "INSERT INTO audit_events (id, ts, type, ip, msisdn, user_id, username, api_key_id,
                                   request_id, path, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        id,
        stored.ts,
        stored.event_type,
        stored.ip,
        stored.msisdn,
        stored.user_id,
        stored.username,
        stored.api_key_id,
        stored.request_id,
        stored.path,
        stored.detail,
        prev,
        &hash[..]
    ])?;
    Ok(id)
}

/// An audit row as read from a `SELECT *` of `audit_events`.
pub fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get("id")?,
        ts: r.get("ts")?,
        event_type: r.get("type")?,
        ip: r.get("ip")?,
        msisdn: r.get("msisdn")?,
        user_id: r.get("user_id")?,
        username: r.get("username")?,
        api_key_id: r.get("api_key_id")?,
        request_id: r.get("request_id")?,
        path: r.get("path")?,
        detail: r.get("detail")?,
    })
}

/// Walks the whole chain from the anchor with the key of the database's
/// data directory (read from its file; never created here).
pub fn verify(conn: &Connection) -> Result<ChainReport, StorageError> {
    let path = conn.path().unwrap_or_default();
    let key = ChainKey::load(&crate::audit::chain_key::data_dir_of(std::path::Path::new(path))?)?;
    verify_with(conn, key.as_ref())
}

/// Walks the whole chain from the anchor. A row may carry the legacy SHA-256
/// link only when it is before the switch point AND dated before the key's
/// creation; every other row must carry the keyed link.
pub fn verify_with(conn: &Connection, key: Option<&ChainKey>) -> Result<ChainReport, StorageError> {
    let keyed_from = keyed_from(conn)?;
    let legacy_before_ts = key.map_or(i64::MAX, ChainKey::created_ms);
    let mut prev = anchor(conn)?;
    let pruned_up_to = anchor_id(conn)?;
    let mut head = (pruned_up_to > 0).then(|| ChainHead { id: pruned_up_to, ts: None, hash: prev.clone() });
    let mut first_broken = None;
    let mut stmt = conn.prepare("SELECT * FROM audit_events ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut checked = 0;
    while let Some(r) = rows.next()? {
        let row = row_from(r)?;
        let prev_hash: Vec<u8> = r.get("prev_hash")?;
        let hash: Vec<u8> = r.get("hash")?;
        head = Some(ChainHead { id: row.id, ts: Some(row.ts), hash: hash.clone() });
        if first_broken.is_some() {
            continue;
        }
        checked += 1;
        let legacy_allowed = row.id < keyed_from && row.ts < legacy_before_ts;
        let is_legacy = hash == chain_hash(&prev_hash, &row);
        let reason = if prev_hash != prev {
            Some(BreakReason::NotLinked)
        } else if legacy_allowed && is_legacy {
            None
        } else {
            match key {
                Some(key) if hash == chain_mac(key, &prev_hash, &row) => None,
                Some(_) if is_legacy => Some(BreakReason::Unkeyed),
                Some(_) => Some(BreakReason::Altered),
                None if is_legacy => Some(BreakReason::Unkeyed),
                None => Some(BreakReason::KeyMissing),
            }
        };
        first_broken = reason.map(|reason| BrokenLink { id: row.id, reason });
        prev = hash;
    }
    Ok(ChainReport { checked, first_broken, keyed_from: keyed_from.max(1), head })
}

/// The chain's head without verifying: the newest event, or the pruning
/// anchor when none is left, or `None` for a chain that never had an event.
pub fn head(conn: &Connection) -> Result<Option<ChainHead>, StorageError> {
    let last: Option<ChainHead> = conn
        .query_row("SELECT id, ts, hash FROM audit_events ORDER BY id DESC LIMIT 1", [], |r| {
            Ok(ChainHead { id: r.get(0)?, ts: Some(r.get(1)?), hash: r.get(2)? })
        })
        .optional()?;
    if last.is_some() {
        return Ok(last);
    }
    let id = anchor_id(conn)?;
    Ok((id > 0).then(|| ChainHead { id, ts: None, hash: anchor(conn).unwrap_or_default() }))
}

/// Deletes events older than `before_ts`, keeping the chain verifiable.
/// Returns how many were deleted.
pub fn prune_before(conn: &mut Connection, before_ts: i64) -> Result<usize, StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT id, hash FROM audit_events WHERE ts < ?1 ORDER BY id DESC LIMIT 1",
            [before_ts],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((last_id, last_hash)) = last else { return Ok(0) };
    let deleted = tx.execute("DELETE FROM audit_events WHERE id <= ?1", [last_id])?;
    let upsert = "INSERT INTO meta (key, value) VALUES (?1, ?2)
                  ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    tx.execute(upsert, params!["audit_anchor", hex::encode(last_hash)])?;
    tx.execute(upsert, params!["audit_anchor_id", last_id.to_string()])?;
    tx.commit()?;
    Ok(deleted)
}

/// Filters for listing events.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this actor.
    pub user_id: Option<String>,
    /// Only this client IP.
    pub ip: Option<String>,
    /// At or after (Unix ms).
    pub since: Option<i64>,
    /// Before (Unix ms).
    pub until: Option<i64>,
    /// Only ids below this (pagination cursor).
    pub before_id: Option<i64>,
}

/// Lists events newest first.
pub fn list(conn: &Connection, f: &AuditFilter, limit: usize) -> Result<Vec<AuditRow>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM audit_events
         WHERE (?1 IS NULL OR type = ?1) AND (?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR ip = ?3)
           AND (?4 IS NULL OR ts >= ?4) AND (?5 IS NULL OR ts < ?5) AND (?6 IS NULL OR id < ?6)
         ORDER BY id DESC LIMIT ?7",
    )?;
    let rows = stmt.query_map(
        params![f.event_type, f.user_id, f.ip, f.since, f.until, f.before_id, limit as i64],
        row_from,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_millis;

    /// A file database (the key lives beside it) migrated to the latest schema.
    fn db() -> (tempfile::TempDir, Connection) {
        db_at(super::super::migrations::LATEST_VERSION)
    }

    fn db_at(version: u32) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("energyload.db")).unwrap();
        super::super::migrations::apply_up_to(&mut c, version).unwrap();
        (dir, c)
    }

    fn event(ts: i64, t: &str) -> AuditRow {
        AuditRow { ts, event_type: t.into(), detail: "{}".into(), ..Default::default() }
    }

    fn broken(c: &Connection) -> Option<BrokenLink> {
        verify(c).unwrap().first_broken
    }

    /// Rewrites every row with the legacy rule, as a forger with write access
    /// to the database (but not to the key file) would.
    fn recompute_plain_chain(c: &Connection) {
        let mut prev = anchor(c).unwrap();
        let rows: Vec<AuditRow> = c
            .prepare("SELECT * FROM audit_events ORDER BY id")
            .unwrap()
            .query_map([], row_from)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for row in rows {
            let hash = chain_hash(&prev, &row);
            c.execute(
                "UPDATE audit_events SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                params![prev, &hash[..], row.id],
            )
            .unwrap();
            prev = hash.to_vec();
        }
    }

    /// Appends legacy (plain SHA-256) rows, as binaries before schema 4 did.
    fn append_legacy(c: &Connection, row: &AuditRow) {
        let last: Option<(i64, Vec<u8>)> = c
            .query_row("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .unwrap();
        let (id, prev) = last.map_or((1, GENESIS.to_vec()), |(id, h)| (id + 1, h));
        let row = AuditRow { id, ..row.clone() };
        let hash = chain_hash(&prev, &row);
        c.execute(
            "INSERT INTO audit_events (id, ts, type, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, row.ts, row.event_type, row.detail, prev, &hash[..]],
        )
        .unwrap();
    }

    #[test]
    fn the_chain_verifies_and_tampering_is_found() {
        let (_dir, mut c) = db();
        for i in 0..5 {
            append(&mut c, &event(i, "login_success")).unwrap();
        }
        let report = verify(&c).unwrap();
        assert_eq!((report.checked, report.first_broken, report.keyed_from), (5, None, 1));
        assert_eq!(report.head, head(&c).unwrap());
        assert_eq!(report.head.unwrap().id, 5);
        c.execute("UPDATE audit_events SET username = 'mallory' WHERE id = 3", []).unwrap();
        assert_eq!(broken(&c), Some(BrokenLink { id: 3, reason: BreakReason::Altered }));
    }

    #[test]
    fn a_row_rewritten_with_the_plain_chain_recomputed_is_found() {
        let (_dir, mut c) = db();
        for i in 0..5 {
            append(&mut c, &event(now_millis() + i, "login_success")).unwrap();
        }
        c.execute("UPDATE audit_events SET username = 'mallory' WHERE id = 3", []).unwrap();
        recompute_plain_chain(&c);
        assert_eq!(broken(&c), Some(BrokenLink { id: 1, reason: BreakReason::Unkeyed }));
        // Moving the switch point past the head (in the database) does not
        // make the rewritten events legacy: they are dated after the key.
        c.execute("UPDATE meta SET value = '1000' WHERE key = 'audit_keyed_from'", []).unwrap();
        assert_eq!(broken(&c), Some(BrokenLink { id: 1, reason: BreakReason::Unkeyed }));
        c.execute("DELETE FROM meta WHERE key = 'audit_keyed_from'", []).unwrap();
        assert_eq!(broken(&c), Some(BrokenLink { id: 1, reason: BreakReason::Unkeyed }));
    }

    #[test]
    fn deleting_a_row_breaks_the_chain() {
        let (_dir, mut c) = db();
        for i in 0..4 {
            append(&mut c, &event(i, "logout")).unwrap();
        }
        c.execute("DELETE FROM audit_events WHERE id = 2", []).unwrap();
        assert_eq!(broken(&c), Some(BrokenLink { id: 3, reason: BreakReason::NotLinked }));
    }

    #[test]
    fn a_legacy_chain_verifies_up_to_the_switch_and_keyed_after_it() {
        let (dir, mut c) = db_at(3);
        for i in 0..3 {
            append_legacy(&c, &event(1_000 + i, "login_success"));
        }
        super::super::migrations::apply(&mut c).unwrap();
        for i in 0..2 {
            append(&mut c, &event(now_millis() + i, "logout")).unwrap();
        }
        let report = verify(&c).unwrap();
        assert_eq!((report.checked, report.first_broken, report.keyed_from), (5, None, 4), "{report:?}");
        // A legacy row altered is still found, with or without recomputing.
        c.execute("UPDATE audit_events SET type = 'logout' WHERE id = 2", []).unwrap();
        assert_eq!(broken(&c), Some(BrokenLink { id: 2, reason: BreakReason::Altered }));
        recompute_plain_chain(&c);
        assert_eq!(broken(&c), Some(BrokenLink { id: 4, reason: BreakReason::Unkeyed }));
        // Without the key file, keyed rows cannot be checked: said so.
        let (dir2, mut fresh) = db_at(3);
        append_legacy(&fresh, &event(1_000, "login_success"));
        super::super::migrations::apply(&mut fresh).unwrap();
        append(&mut fresh, &event(now_millis(), "logout")).unwrap();
        std::fs::remove_file(dir2.path().join(crate::audit::chain_key::KEY_FILE_NAME)).unwrap();
        assert_eq!(broken(&fresh), Some(BrokenLink { id: 2, reason: BreakReason::KeyMissing }));
        drop(dir);
    }

    #[test]
    fn pruning_keeps_the_rest_verifiable_across_the_switch() {
        let (_dir, mut c) = db_at(3);
        for i in 0..3 {
            append_legacy(&c, &event(i * 10, "logout"));
        }
        super::super::migrations::apply(&mut c).unwrap();
        for i in 3..6 {
            append(&mut c, &event(i * 10, "logout")).unwrap();
        }
        assert_eq!(prune_before(&mut c, 25).unwrap(), 3);
        let report = verify(&c).unwrap();
        assert_eq!((report.checked, report.first_broken), (3, None));
        append(&mut c, &event(70, "logout")).unwrap();
        assert_eq!(prune_before(&mut c, 1000).unwrap(), 4);
        let anchor_head = head(&c).unwrap().unwrap();
        assert_eq!((anchor_head.id, anchor_head.ts), (7, None));
        append(&mut c, &event(80, "logout")).unwrap();
        let report = verify(&c).unwrap();
        assert_eq!((report.checked, report.first_broken), (1, None));
        assert_eq!(report.head.as_ref().map(|h| h.id), Some(8));
        assert_eq!(list(&c, &AuditFilter::default(), 10).unwrap()[0].id, 8);
        c.execute("UPDATE audit_events SET detail = '{\"x\":1}' WHERE id = 8", []).unwrap();
        assert_eq!(broken(&c), Some(BrokenLink { id: 8, reason: BreakReason::Altered }));
    }
}
