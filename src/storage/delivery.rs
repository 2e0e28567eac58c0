//! Typed queries for the delivery dispatcher: claim due messages with a
//! lease (one atomic `UPDATE … RETURNING`), record a batch of outcomes with
//! their attempt rows in one transaction, release leases left by a crash,
//! make retries due after an outage, and the pause switch.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StorageError;
use super::message_key::message_id_in;
use super::stored_body;

/// A message claimed for delivery.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// Our id.
    pub id: i64,
    /// `header.messageId` as received.
    pub message_id: String,
    /// The JSON as received.
    pub body: Vec<u8>,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Unix ms from which `delivery.max_age` counts (acceptance, or the last
    /// manual retry).
    pub created_at: i64,
    /// Meter id.
    pub meter_id: String,
    /// Site id.
    pub site_id: String,
    /// Local market.
    pub local_market: String,
}

/// The statement of [`claim_due`] (its plan is tested in `storage::query_plans`).
pub(super) const CLAIM_DUE: &str = "UPDATE messages SET status = 1, lease_until = ?2, next_attempt_at = NULL, updated_at = ?1
         WHERE id IN (SELECT id FROM messages INDEXED BY messages_due
                      WHERE status = 0 AND next_attempt_at <= ?1
                      ORDER BY next_attempt_at, id LIMIT ?3)
         RETURNING id, body_format, body, attempts, cycle_started,
                   (SELECT meter_id FROM meters WHERE id = meter), (SELECT site_id FROM sites WHERE id = site),
                   (SELECT local_market FROM feeds WHERE id = feed)";

/// Claims up to `limit` due `pending` messages: they become `delivering`
/// with `lease_until`, oldest due first.
///
/// The claim clears `next_attempt_at` as it sets `lease_until` (every way
/// out of `delivering` sets `next_attempt_at` again), so the row keeps its
/// size: a row that grows splits its full page, and claimed rows are the
/// newest, in the last, full pages (measured: 24.7 of 355.5 bytes per
/// message were free space in `messages` pages before this; BENCHMARKS.md).
///
/// The delivery queries name their partial index (`INDEXED BY`): left to
/// itself the planner picks `messages_by_status` and sorts every pending
/// message on each claim (measured: 370 µs of worker CPU per delivered
/// message with 40,000 pending). `INDEXED BY` also turns a plan without the
/// index into an error instead of a silent scan.
pub fn claim_due(
    conn: &Connection,
    now: i64,
    lease_until: i64,
    limit: usize,
) -> Result<Vec<ClaimedMessage>, StorageError> {
    let mut stmt = conn.prepare_cached(CLAIM_DUE)?;
    let rows = stmt.query_map(params![now, lease_until, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            ClaimedMessage {
                id: r.get(0)?,
                message_id: String::new(),
                body: Vec::new(),
                attempts: r.get(3)?,
                created_at: r.get(4)?,
                meter_id: r.get(5)?,
                site_id: r.get(6)?,
                local_market: r.get(7)?,
            },
        ))
    })?;
    let packed: Vec<(i64, Vec<u8>, ClaimedMessage)> = rows.collect::<Result<_, _>>()?;
    // A body that does not decode (or carries no messageId, which is stored
    // only there) fails the claim with an error naming the message (logged
    // by the dispatcher); the claimed rows go back to `pending` when their
    // lease ends, like after a crash.
    let mut claimed = packed
        .into_iter()
        .map(|(format, body, m)| {
            let body = stored_body::unpack(format, &body)
                .map_err(|e| StorageError::Corrupt(format!("message {}: {e}", m.id)))?;
            let message_id = message_id_in(&body).ok_or_else(|| {
                StorageError::Corrupt(format!("message {}: its body has no header.messageId", m.id))
            })?;
            Ok(ClaimedMessage { message_id, body, ..m })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    claimed.sort_by_key(|m| m.id);
    Ok(claimed)
}

/// The end state of one claimed message after an attempt (or none).
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// eSight took it.
    Delivered,
    /// Try again at `next_attempt_at`.
    Retry {
        /// Unix ms.
        next_attempt_at: i64,
        /// Contract code of the last failure.
        error_code: String,
    },
    /// Given up for good.
    Failed {
        /// Contract code.
        error_code: String,
    },
    /// Put back without counting an attempt (circuit open, shutdown, pause).
    Requeue {
        /// Unix ms.
        next_attempt_at: i64,
    },
}

/// One attempt to record with its settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// The message.
    pub message: i64,
    /// When the attempt started (Unix ms).
    pub at: i64,
    /// How it ended.
    pub settlement: Settlement,
    /// eSight's HTTP status, if it answered.
    pub http_status: Option<u16>,
    /// What went wrong, for people.
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: i64,
}

/// Records a batch of settlements and their attempt rows in one transaction.
/// A message whose state changed meanwhile (an eSight report marked it
/// `rejected`) keeps that state; its attempt is still recorded.
pub fn record(conn: &mut Connection, now: i64, batch: &[AttemptRecord]) -> Result<(), StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut attempt = tx.prepare_cached(
            "INSERT INTO delivery_attempts (message, attempt, at, outcome, http_status, error, duration_ms)
             VALUES (?1, (SELECT coalesce(max(attempt), 0) + 1 FROM delivery_attempts WHERE message = ?1),
                     ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut delivered = tx.prepare_cached(
            "UPDATE messages SET status = 2, attempts = attempts + 1, delivered_at = ?2,
                    updated_at = ?2, lease_until = NULL, next_attempt_at = NULL,
                    error_code = NULL, error_message = NULL
             WHERE id = ?1 AND status = 1",
        )?;
        let mut retry = tx.prepare_cached(
            "UPDATE messages SET status = 0, attempts = attempts + 1, next_attempt_at = ?3,
                    updated_at = ?2, lease_until = NULL, error_code = ?4, error_message = ?5
             WHERE id = ?1 AND status = 1",
        )?;
        let mut failed = tx.prepare_cached(
            "UPDATE messages SET status = 3, attempts = attempts + 1, updated_at = ?2,
                    lease_until = NULL, next_attempt_at = NULL, error_code = ?3, error_message = ?4
             WHERE id = ?1 AND status = 1",
        )?;
        let mut requeue = tx.prepare_cached(
            "UPDATE messages SET status = 0, next_attempt_at = ?3, updated_at = ?2,
                    lease_until = NULL
             WHERE id = ?1 AND status = 1",
        )?;
        for a in batch {
            let outcome = match &a.settlement {
                Settlement::Delivered => {
                    delivered.execute(params![a.message, now])?;
                    0
                }
                Settlement::Retry { next_attempt_at, error_code } => {
                    retry.execute(params![a.message, now, next_attempt_at, error_code, a.error])?;
                    1
                }
                Settlement::Failed { error_code } => {
                    failed.execute(params![a.message, now, error_code, a.error])?;
                    2
                }
                Settlement::Requeue { next_attempt_at } => {
                    requeue.execute(params![a.message, now, next_attempt_at])?;
                    continue;
                }
            };
            attempt.execute(params![a.message, a.at, outcome, a.http_status, a.error, a.duration_ms])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Makes every `delivering` message whose lease ended before `before` due
/// again (at start-up: all of them, since no worker runs yet). Returns how
/// many were released.
pub fn release_leases(conn: &Connection, before: i64, now: i64) -> Result<usize, StorageError> {
    Ok(conn.execute(
        "UPDATE messages INDEXED BY messages_leased
         SET status = 0, lease_until = NULL, next_attempt_at = ?2, updated_at = ?2
         WHERE status = 1 AND lease_until < ?1",
        params![before, now],
    )?)
}

/// Makes every `pending` message waiting for a retry due at `now`: called
/// when eSight answers again after an outage, so the messages that failed
/// during it are sent at once instead of after their backoff (minutes by
/// then). Messages not yet tried are due already; a catalog recheck without
/// an error code is left alone. Returns how many were moved.
pub fn due_after_outage(conn: &Connection, now: i64) -> Result<usize, StorageError> {
    Ok(conn.execute(
        "UPDATE messages INDEXED BY messages_due SET next_attempt_at = ?1, updated_at = ?1
         WHERE status = 0 AND next_attempt_at > ?1 AND error_code IS NOT NULL",
        params![now],
    )?)
}

/// When the next `pending` message falls due (Unix ms), if any.
pub fn next_due_at(conn: &Connection) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .query_row(
            "SELECT next_attempt_at FROM messages INDEXED BY messages_due WHERE status = 0
             ORDER BY next_attempt_at LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Whether delivery is paused (persisted across restarts).
pub fn is_paused(conn: &Connection) -> Result<bool, StorageError> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'delivery_paused'", [], |r| r.get(0))
        .optional()?;
    Ok(v.as_deref() == Some("1"))
}

/// Who paused delivery and when (Unix ms); `None` while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseInfo {
    /// The username that paused it (`None` for a pause from before this was kept).
    pub by: Option<String>,
    /// When (`None` for a pause from before this was kept).
    pub since: Option<i64>,
}

/// Pauses (recording who and when, unless it already was paused) or resumes delivery.
pub fn set_paused(conn: &Connection, paused: bool, by: Option<&str>, now: i64) -> Result<(), StorageError> {
    let was_paused = is_paused(conn)?;
    let mut put = conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    put.execute(["delivery_paused", if paused { "1" } else { "0" }])?;
    if paused {
        if !was_paused {
            put.execute(["delivery_paused_by", by.unwrap_or("")])?;
            put.execute(["delivery_paused_at", &now.to_string()])?;
        }
    } else {
        conn.execute("DELETE FROM meta WHERE key IN ('delivery_paused_by', 'delivery_paused_at')", [])?;
    }
    Ok(())
}

/// Who paused delivery and since when, if it is paused.
pub fn pause_info(conn: &Connection) -> Result<Option<PauseInfo>, StorageError> {
    if !is_paused(conn)? {
        return Ok(None);
    }
    let read = |key: &str| -> Result<Option<String>, StorageError> {
        Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    };
    Ok(Some(PauseInfo {
        by: read("delivery_paused_by")?.filter(|s| !s.is_empty()),
        since: read("delivery_paused_at")?.and_then(|s| s.parse().ok()),
    }))
}
