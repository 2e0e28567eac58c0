//! Typed queries on `messages`: the group-commit insert used by the ingest
//! writer, and the reads behind the message lists.
//!
//! A caller builds a [`NewMessage`] from a validated message's fields and
//! its body packed on the caller's thread ([`StoredBody::pack`]); the
//! writer turns meter, site and feed into their small integer references
//! ([`Dimensions`], cached in the writer).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

pub use super::message_queries::*;
pub use super::stored_body::{BodyFormat, StoredBody};

use super::StorageError;
use super::ids::IdGenerator;
use super::message_key::{message_id_in, message_key};
use super::stored_body;

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
    /// The JSON as received, packed ([`StoredBody::pack`]).
    pub body: StoredBody,
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

/// Entries per dimension cache before it starts over (10,000 meters fit).
const MAX_CACHED: usize = 100_000;

/// The integer references of meters, sites and feeds already seen, for the
/// one connection that inserts messages. Rows of `meters`, `sites` and
/// `feeds` are never deleted or changed, so an entry stays true — unless the
/// transaction that inserted it rolls back: [`Dimensions::forget`] then.
#[derive(Debug, Default)]
pub struct Dimensions {
    meters: HashMap<String, i64>,
    sites: HashMap<String, i64>,
    feeds: HashMap<(String, String), i64>,
}

impl Dimensions {
    /// Empty; filled as messages are stored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every entry (after a rolled-back transaction).
    pub fn forget(&mut self) {
        *self = Self::default();
    }

    fn meter(&mut self, tx: &Transaction<'_>, meter_id: &str) -> Result<i64, StorageError> {
        if let Some(id) = self.meters.get(meter_id) {
            return Ok(*id);
        }
        let id = reference(tx, "meters", "meter_id = ?1", "(meter_id) VALUES (?1)", [meter_id])?;
        bounded_insert(&mut self.meters, meter_id.to_owned(), id);
        Ok(id)
    }

    fn site(&mut self, tx: &Transaction<'_>, site_id: &str) -> Result<i64, StorageError> {
        if let Some(id) = self.sites.get(site_id) {
            return Ok(*id);
        }
        let id = reference(tx, "sites", "site_id = ?1", "(site_id) VALUES (?1)", [site_id])?;
        bounded_insert(&mut self.sites, site_id.to_owned(), id);
        Ok(id)
    }

    fn feed(&mut self, tx: &Transaction<'_>, market: &str, feed_type: &str) -> Result<i64, StorageError> {
        // Borrowed lookup without building a key: feeds are few.
        if let Some((_, id)) = self.feeds.iter().find(|((m, f), _)| m == market && f == feed_type) {
            return Ok(*id);
        }
        let id = reference(
            tx,
            "feeds",
            "local_market = ?1 AND data_feed_type = ?2",
            "(local_market, data_feed_type) VALUES (?1, ?2)",
            [market, feed_type],
        )?;
        bounded_insert(&mut self.feeds, (market.to_owned(), feed_type.to_owned()), id);
        Ok(id)
    }
}

fn bounded_insert<K: std::hash::Hash + Eq>(map: &mut HashMap<K, i64>, key: K, id: i64) {
    if map.len() >= MAX_CACHED {
        map.clear();
    }
    map.insert(key, id);
}

/// The id of the `table` row matching `find`, inserted (`insert`) if missing.
fn reference<P: rusqlite::Params + Copy>(
    tx: &Transaction<'_>,
    table: &str,
    find: &str,
    insert: &str,
    values: P,
) -> Result<i64, StorageError> {
    let found: Option<i64> = tx
        .prepare_cached(&format!("SELECT id FROM {table} WHERE {find}"))?
        .query_row(values, |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    tx.prepare_cached(&format!("INSERT INTO {table} {insert}"))?.execute(values)?;
    Ok(tx.last_insert_rowid())
}

/// Stores `items` inside `tx`, checking idempotency item by item (so that
/// repeats within one batch are caught too). A message's rows are found by
/// its `message_key`: the common path is one statement, an insert guarded
/// by `NOT EXISTS` on the key (one descent of the narrow key index, which
/// finds nothing). Only when a row with the key exists are the stored
/// bodies read: a row is the same message only if the messageId in its body
/// is the same, so a key shared by two messageIds stores both. On an error
/// the caller rolls back and must [`Dimensions::forget`].
pub fn store_batch(
    tx: &Transaction<'_>,
    ids: &mut IdGenerator,
    dims: &mut Dimensions,
    now: i64,
    items: &[NewMessage],
    same_content: SameContent,
) -> Result<Vec<StoreOutcome>, StorageError> {
    const COLUMNS: &str = "INSERT INTO messages (id, message_key, status, meter, site, feed, datapoints,
                               body_format, body, updated_at, next_attempt_at, cycle_started)
         SELECT ?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?9";
    let mut insert_new = tx.prepare_cached(&format!(
        "{COLUMNS} WHERE NOT EXISTS (SELECT 1 FROM messages WHERE message_key = ?2)"
    ))?;
    let mut outcomes = Vec::with_capacity(items.len());
    for m in items {
        let key = message_key(&m.message_id);
        let id = ids.next_id(now);
        let meter = dims.meter(tx, &m.meter_id)?;
        let site = dims.site(tx, &m.site_id)?;
        let feed = dims.feed(tx, &m.local_market, &m.data_feed_type)?;
        let row =
            params![id, key, meter, site, feed, m.datapoints, m.body.format.code(), &m.body.bytes[..], now];
        if insert_new.execute(row)? == 1 {
            outcomes.push(StoreOutcome::Inserted(id));
            continue;
        }
        let outcome = match stored_before(tx, key, m, same_content)? {
            Some(before) => before,
            None => {
                // Another messageId holds this key: a message of its own.
                tx.prepare_cached(COLUMNS)?.execute(row)?;
                StoreOutcome::Inserted(id)
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The outcome for a messageId stored before (a duplicate when the content
/// is the same, a conflict otherwise), or `None` when no row with `key`
/// carries this messageId in its body.
fn stored_before(
    tx: &Transaction<'_>,
    key: i64,
    m: &NewMessage,
    same_content: SameContent,
) -> Result<Option<StoreOutcome>, StorageError> {
    let mut find = tx.prepare_cached(
        "SELECT id, body_format, body, status FROM messages WHERE message_key = ?1 ORDER BY id",
    )?;
    let mut rows = find.query([key])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let body: Vec<u8> = r.get(2)?;
        let stored = stored_body::unpack(r.get(1)?, &body)
            .map_err(|e| StorageError::Corrupt(format!("message {id}: {e}")))?;
        if message_id_in(&stored).as_deref() != Some(m.message_id.as_str()) {
            continue; // another messageId with the same key
        }
        let offered = m.body.unpack()?;
        return Ok(Some(if same_content(&stored, &offered) {
            StoreOutcome::Duplicate(id, MessageStatus::from_code(r.get(3)?)?)
        } else {
            StoreOutcome::Conflict(id)
        }));
    }
    Ok(None)
}

/// The largest message id stored (0 when empty).
pub fn max_id(conn: &rusqlite::Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| r.get(0))?)
}

/// Messages that are `pending` or `delivering`.
pub fn count_open(conn: &rusqlite::Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row("SELECT count(*) FROM messages WHERE status IN (0, 1)", [], |r| r.get(0))?)
}

/// Test rows: meter 1 `M1`, site 1 `S1`, feed 1 (`lu`, `electricity`), for
/// tests that insert messages with plain SQL (idempotent).
#[cfg(test)]
pub(crate) fn insert_test_dimensions(c: &rusqlite::Connection) {
    c.execute_batch(
        "INSERT OR IGNORE INTO meters (id, meter_id) VALUES (1, 'M1');
         INSERT OR IGNORE INTO sites (id, site_id) VALUES (1, 'S1');
         INSERT OR IGNORE INTO feeds (id, local_market, data_feed_type) VALUES (1, 'lu', 'electricity');",
    )
    .expect("test dimension rows");
}

#[cfg(test)]
mod tests;
