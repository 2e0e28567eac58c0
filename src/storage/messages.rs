//! Typed queries on `messages`: the group-commit insert used by the ingest
//! writer, and the reads behind the message lists.

use rusqlite::{Transaction, params};

pub use super::message_queries::*;

use super::StorageError;
use super::ids::IdGenerator;

/// A validated message ready to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// `header.messageId`.
    pub message_id: String,
    /// Meter id from `header.gatewayUrn`.
    pub meter_id: String,
    /// Site id from `header.gatewayUrn`.
    pub site_id: String,
    /// Local market from `header.gatewayTypeUrn`.
    pub local_market: String,
    /// Data feed type from `header.gatewayTypeUrn`.
    pub data_feed_type: String,
    /// Number of datapoints.
    pub datapoints: i64,
    /// The JSON as received.
    pub body: bytes::Bytes,
}

/// What storing one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored as a new `pending` message.
    Inserted(i64),
    /// The same messageId with the same content was stored before (its
    /// current status).
    Duplicate(i64, MessageStatus),
    /// The same messageId was stored before with different content.
    Conflict(i64),
}

/// Decides whether two bodies with the same messageId carry the same content.
pub type SameContent = fn(&[u8], &[u8]) -> bool;

/// Stores `items` inside `tx`, checking idempotency item by item (so that
/// repeats within one batch are caught too). The insert itself detects a
/// messageId already stored (`ON CONFLICT DO NOTHING`), so the common path
/// costs one index descent and computes no hash; only a repeat reads the
/// stored body to compare content.
pub fn store_batch(
    tx: &Transaction<'_>,
    ids: &mut IdGenerator,
    now: i64,
    items: &[NewMessage],
    same_content: SameContent,
) -> Result<Vec<StoreOutcome>, StorageError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (id, message_id, status, meter_id, site_id, local_market, data_feed_type,
                               datapoints, body, created_at, updated_at, next_attempt_at, cycle_started)
         VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?9, ?9)
         ON CONFLICT (message_id) DO NOTHING",
    )?;
    let mut outcomes = Vec::with_capacity(items.len());
    for m in items {
        let id = ids.next_id(now);
        let inserted = insert.execute(params![
            id,
            m.message_id,
            m.meter_id,
            m.site_id,
            m.local_market,
            m.data_feed_type,
            m.datapoints,
            &m.body[..],
            now
        ])?;
        let outcome =
            if inserted == 1 { StoreOutcome::Inserted(id) } else { stored_before(tx, m, same_content)? };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The outcome for a messageId that is already stored: a duplicate when the
/// content is the same, a conflict otherwise.
fn stored_before(
    tx: &Transaction<'_>,
    m: &NewMessage,
    same_content: SameContent,
) -> Result<StoreOutcome, StorageError> {
    let mut find = tx.prepare_cached("SELECT id, body, status FROM messages WHERE message_id = ?1")?;
    let (id, body, status) = find.query_row([&m.message_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
    })?;
    Ok(if same_content(&body, &m.body) {
        StoreOutcome::Duplicate(id, MessageStatus::parse(&status).unwrap_or(MessageStatus::Pending))
    } else {
        StoreOutcome::Conflict(id)
    })
}

/// The largest message id stored (0 when empty).
pub fn max_id(conn: &rusqlite::Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| r.get(0))?)
}

/// Messages that are `pending` or `delivering`.
pub fn count_open(conn: &rusqlite::Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM messages WHERE status IN ('pending', 'delivering')",
        [],
        |r| r.get(0),
    )?)
}
