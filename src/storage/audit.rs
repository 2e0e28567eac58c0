//! Typed queries on the append-only, hash-chained `audit_events` table.
//!
//! Each row stores `prev_hash` (the previous row's `hash`) and
//! `hash = SHA-256(prev_hash ‖ id ‖ ts ‖ fields…)`, every text field
//! length-prefixed so no two rows serialise alike. Pruning deletes the oldest
//! rows and records the last deleted hash as `meta('audit_anchor')`, so the
//! remaining chain still verifies from its first row.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::StorageError;

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

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Rows checked.
    pub checked: u64,
    /// The first row whose hashes do not match, if any.
    pub first_broken: Option<i64>,
}

/// The `prev_hash` of the first event of a chain that was never pruned.
pub const GENESIS: [u8; 32] = [0; 32];

/// The `hash` an event row carries: SHA-256 over the previous row's hash,
/// the row's id and timestamp and its length-prefixed text fields.
pub fn chain_hash(prev: &[u8], row: &AuditRow) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(row.id.to_be_bytes());
    h.update(row.ts.to_be_bytes());
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
                h.update((s.len() as u32).to_be_bytes());
                h.update(s.as_bytes());
            }
            None => h.update(u32::MAX.to_be_bytes()),
        }
    }
    h.finalize().into()
}

fn anchor(conn: &Connection) -> Result<Vec<u8>, StorageError> {
    let hex_anchor: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'audit_anchor'", [], |r| r.get(0)).optional()?;
    Ok(hex_anchor.and_then(|h| hex::decode(h).ok()).unwrap_or_else(|| GENESIS.to_vec()))
}

/// Appends one event in its own immediate transaction; returns its id.
pub fn append(conn: &mut Connection, row: &AuditRow) -> Result<i64, StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = append_in(&tx, row)?;
    tx.commit()?;
    Ok(id)
}

/// Appends one event inside the caller's immediate transaction, so that it
/// commits (or rolls back) together with the change it records.
pub fn append_in(tx: &Connection, row: &AuditRow) -> Result<i64, StorageError> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (id, prev) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => {
            let pruned_up_to: i64 = tx
                .query_row("SELECT value FROM meta WHERE key = 'audit_anchor_id'", [], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (pruned_up_to + 1, anchor(tx)?)
        }
    };
    let stored = AuditRow { id, ..row.clone() };
    let hash = chain_hash(&prev, &stored);
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

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
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

/// Walks the whole chain from the anchor.
pub fn verify(conn: &Connection) -> Result<ChainReport, StorageError> {
    let mut prev = anchor(conn)?;
    let mut stmt = conn.prepare("SELECT * FROM audit_events ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut checked = 0;
    while let Some(r) = rows.next()? {
        let row = row_from(r)?;
        let prev_hash: Vec<u8> = r.get("prev_hash")?;
        let hash: Vec<u8> = r.get("hash")?;
        checked += 1;
        if prev_hash != prev || hash != chain_hash(&prev_hash, &row) {
            return Ok(ChainReport { checked, first_broken: Some(row.id) });
        }
        prev = hash;
    }
    Ok(ChainReport { checked, first_broken: None })
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

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::migrations::apply(&mut c).unwrap();
        c
    }

    fn event(ts: i64, t: &str) -> AuditRow {
        AuditRow { ts, event_type: t.into(), detail: "{}".into(), ..Default::default() }
    }

    #[test]
    fn the_chain_verifies_and_tampering_is_found() {
        let mut c = db();
        for i in 0..5 {
            append(&mut c, &event(i, "login_success")).unwrap();
        }
        assert_eq!(verify(&c).unwrap(), ChainReport { checked: 5, first_broken: None });
        c.execute("UPDATE audit_events SET username = 'mallory' WHERE id = 3", []).unwrap();
        assert_eq!(verify(&c).unwrap().first_broken, Some(3));
    }

    #[test]
    fn deleting_a_row_breaks_the_chain() {
        let mut c = db();
        for i in 0..4 {
            append(&mut c, &event(i, "logout")).unwrap();
        }
        c.execute("DELETE FROM audit_events WHERE id = 2", []).unwrap();
        assert_eq!(verify(&c).unwrap().first_broken, Some(3));
    }

    #[test]
    fn pruning_keeps_the_rest_verifiable() {
        let mut c = db();
        for i in 0..6 {
            append(&mut c, &event(i * 10, "logout")).unwrap();
        }
        assert_eq!(prune_before(&mut c, 25).unwrap(), 3);
        assert_eq!(verify(&c).unwrap(), ChainReport { checked: 3, first_broken: None });
        append(&mut c, &event(70, "logout")).unwrap();
        assert_eq!(prune_before(&mut c, 1000).unwrap(), 4);
        append(&mut c, &event(80, "logout")).unwrap();
        let report = verify(&c).unwrap();
        assert_eq!(report, ChainReport { checked: 1, first_broken: None });
        assert_eq!(list(&c, &AuditFilter::default(), 10).unwrap()[0].id, 8);
    }
}
