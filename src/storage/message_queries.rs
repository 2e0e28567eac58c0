//! Reads and admin updates on `messages`: filtered lists (SQL built from the
//! filters present, so SQLite uses the matching index), detail with the
//! attempt log, retry, counts, failures grouped by cause and delivery
//! statistics.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::StorageError;

/// A message's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Claimed by a worker.
    Delivering,
    /// eSight took it.
    Delivered,
    /// Given up.
    Failed,
    /// eSight reported errors for it after delivery.
    Rejected,
}

impl MessageStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] =
        [Self::Pending, Self::Delivering, Self::Delivered, Self::Failed, Self::Rejected];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
        }
    }

    /// Parses a requested name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The stored number (`messages.status`): its place in [`Self::ALL`].
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The status of a stored number.
    pub fn from_code(code: i64) -> Result<Self, StorageError> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .ok_or_else(|| StorageError::Corrupt(format!("unknown message status {code}")))
    }
}

/// A stored status as a SQL result, for row mappers.
fn status_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<MessageStatus> {
    let code: i64 = r.get(i)?;
    MessageStatus::from_code(code).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, Box::new(e))
    })
}

/// The messageId read from a row's body as a SQL result: NULL (the body
/// does not decode or has none) is a corrupt row.
fn message_id_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    let found: Option<String> = r.get(i)?;
    found.ok_or_else(|| {
        let id = r.get::<_, i64>(0).unwrap_or_default();
        let e = StorageError::Corrupt(format!("message {id}: its body has no readable header.messageId"));
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// The stored number of an attempt's outcome name (`delivery_attempts.outcome`).
pub(super) const OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];

/// A message as listed (without its body).
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// Our id.
    pub id: i64,
    /// `header.messageId`.
    pub message_id: String,
    /// Status.
    pub status: MessageStatus,
    /// Meter id.
    pub meter_id: String,
    /// Site id.
    pub site_id: String,
    /// Local market.
    pub local_market: String,
    /// Data feed type.
    pub data_feed_type: String,
    /// Datapoint count.
    pub datapoints: i64,
    /// Attempts in the current cycle.
    pub attempts: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Unix ms.
    pub delivered_at: Option<i64>,
    /// Unix ms.
    pub next_attempt_at: Option<i64>,
    /// Last failure code.
    pub error_code: Option<String>,
}

/// A listed row's columns: the messageId read from the body (the SQL
/// function of `storage::message_key`: it is stored nowhere else), meter,
/// site and feed looked up by their references (a few rows per page;
/// correlated lookups keep the list's plan on its index), created_at from
/// the id.
const ROW_COLUMNS: &str = "m.id, message_id(m.body_format, m.body), m.status, \
     (SELECT meter_id FROM meters WHERE id = m.meter), (SELECT site_id FROM sites WHERE id = m.site), \
     (SELECT local_market FROM feeds WHERE id = m.feed), (SELECT data_feed_type FROM feeds WHERE id = m.feed), \
     m.datapoints, m.attempts, m.id >> 16, m.updated_at, m.delivered_at, m.next_attempt_at, m.error_code";

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        message_id: message_id_at(r, 1)?,
        status: status_at(r, 2)?,
        meter_id: r.get(3)?,
        site_id: r.get(4)?,
        local_market: r.get(5)?,
        data_feed_type: r.get(6)?,
        datapoints: r.get(7)?,
        attempts: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        delivered_at: r.get(11)?,
        next_attempt_at: r.get(12)?,
        error_code: r.get(13)?,
    })
}

/// List filters; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Status.
    pub status: Option<MessageStatus>,
    /// Exact `header.messageId`.
    pub message_id: Option<String>,
    /// Meter id.
    pub meter_id: Option<String>,
    /// Site id.
    pub site_id: Option<String>,
    /// Local market.
    pub local_market: Option<String>,
    /// Data feed type.
    pub data_feed_type: Option<String>,
    /// Created at or after (Unix ms).
    pub since: Option<i64>,
    /// Created before (Unix ms).
    pub until: Option<i64>,
    /// Last failure code (`error_code`).
    pub error_code: Option<String>,
}

impl MessageFilter {
    /// `WHERE` clause and parameters for the filters present.
    fn clause(&self, before_id: Option<i64>) -> (String, Vec<Sql>) {
        let mut conds = Vec::new();
        let mut args = Vec::new();
        if let Some(status) = self.status {
            conds.push(format!("status = {}", status.code()));
        }
        // A messageId is found by its key (the key index, newest first) and
        // compared with the one in each body, so another messageId sharing
        // the key never matches and LIMIT counts only real matches.
        if let Some(message_id) = &self.message_id {
            conds.push("message_key = ? AND message_id(body_format, body) = ?".to_owned());
            args.push(Sql::Integer(super::message_key::message_key(message_id)));
            args.push(Sql::Text(message_id.clone()));
        }
        // Meter, site and feed compare their references with one looked up
        // once (a scalar subquery), so the meter and site lists keep their
        // index (meter, id) / (site, id); an unknown name matches nothing.
        let mut eq = |col: &str, v: &Option<String>| {
            if let Some(v) = v {
                conds.push(col.to_owned());
                args.push(Sql::Text(v.clone()));
            }
        };
        eq("meter = (SELECT id FROM meters WHERE meter_id = ?)", &self.meter_id);
        eq("site = (SELECT id FROM sites WHERE site_id = ?)", &self.site_id);
        eq("feed IN (SELECT id FROM feeds WHERE local_market = ?)", &self.local_market);
        eq("feed IN (SELECT id FROM feeds WHERE data_feed_type = ?)", &self.data_feed_type);
        eq("error_code = ?", &self.error_code);
        // Ids are time-ordered: time bounds become id bounds on the primary key.
        if let Some(since) = self.since {
            conds.push("id >= ?".into());
            args.push(Sql::Integer(super::ids::first_id_at(since)));
        }
        if let Some(until) = self.until {
            conds.push("id < ?".into());
            args.push(Sql::Integer(super::ids::first_id_at(until)));
        }
        if let Some(before) = before_id {
            conds.push("id < ?".into());
            args.push(Sql::Integer(before));
        }
        let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
        (clause, args)
    }
}

/// Messages matching `f`, newest first, below `before_id`, at most `limit`.
pub fn list(
    conn: &Connection,
    f: &MessageFilter,
    before_id: Option<i64>,
    limit: usize,
) -> Result<Vec<MessageRow>, StorageError> {
    let (sql, args) = list_sql(f, before_id, limit);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), row_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The statement and parameters of [`list`] (its plan is tested in
/// `storage::query_plans`).
pub(super) fn list_sql(f: &MessageFilter, before_id: Option<i64>, limit: usize) -> (String, Vec<Sql>) {
    let (clause, mut args) = f.clause(before_id);
    args.push(Sql::Integer(limit as i64));
    (format!("SELECT {ROW_COLUMNS} FROM messages m {clause} ORDER BY m.id DESC LIMIT ?"), args)
}

/// One message with its body (the JSON as received).
pub fn get(conn: &Connection, id: i64) -> Result<Option<(MessageRow, Vec<u8>)>, StorageError> {
    let sql = format!("SELECT {ROW_COLUMNS}, m.body_format, m.body FROM messages m WHERE m.id = ?1");
    let found = conn
        .query_row(&sql, [id], |r| Ok((row_from(r)?, r.get::<_, i64>(14)?, r.get::<_, Vec<u8>>(15)?)))
        .optional()?;
    match found {
        Some((row, format, body)) => Ok(Some((row, super::stored_body::unpack(format, &body)?))),
        None => Ok(None),
    }
}

/// One recorded attempt.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    /// Unix ms.
    pub at: i64,
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
    /// eSight's status, if it answered.
    pub http_status: Option<i64>,
    /// What went wrong.
    pub error: Option<String>,
    /// Duration.
    pub duration_ms: i64,
}

/// The attempt log of a message, oldest first.
pub fn attempts(conn: &Connection, id: i64) -> Result<Vec<AttemptRow>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, outcome, http_status, error, duration_ms FROM delivery_attempts WHERE message = ?1
         ORDER BY attempt",
    )?;
    let rows = stmt.query_map([id], |r| {
        let outcome: i64 = r.get(1)?;
        let outcome = usize::try_from(outcome).ok().and_then(|i| OUTCOMES.get(i)).ok_or_else(|| {
            let e = StorageError::Corrupt(format!("unknown attempt outcome {outcome}"));
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Integer, Box::new(e))
        })?;
        Ok(AttemptRow {
            at: r.get(0)?,
            outcome: (*outcome).to_owned(),
            http_status: r.get(2)?,
            error: r.get(3)?,
            duration_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What a retry request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryResult {
    /// Back to `pending`.
    Requeued,
    /// No such message.
    NotFound,
    /// Not `failed` or `rejected`.
    WrongState(MessageStatus),
}

const REQUEUE: &str = "status = 0, attempts = 0, cycle_started = ?1, next_attempt_at = ?1, \
                       updated_at = ?1, error_code = NULL, error_message = NULL, lease_until = NULL";

/// Sends a `failed` or `rejected` message back to `pending` with a fresh
/// retry cycle (attempts and `max_age` count again from now; the attempt log
/// keeps the history).
pub fn retry(conn: &Connection, id: i64, now: i64) -> Result<RetryResult, StorageError> {
    let sql = format!("UPDATE messages SET {REQUEUE} WHERE id = ?2 AND status IN (3, 4)");
    if conn.execute(&sql, params![now, id])? == 1 {
        return Ok(RetryResult::Requeued);
    }
    let status: Option<i64> =
        conn.query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    Ok(match status {
        None => RetryResult::NotFound,
        Some(s) => RetryResult::WrongState(MessageStatus::from_code(s)?),
    })
}

/// Retries every `failed`/`rejected` message matching `f` (its status, if
/// set, must be one of those two); returns how many.
pub fn retry_matching(conn: &Connection, f: &MessageFilter, now: i64) -> Result<usize, StorageError> {
    let (clause, args) = f.clause(None);
    let extra = if clause.is_empty() { "WHERE" } else { " AND" };
    let sql = format!(
        "UPDATE messages SET {} {clause}{extra} status IN (3, 4)",
        REQUEUE.replace("?1", &now.to_string())
    );
    Ok(conn.execute(&sql, params_from_iter(args))?)
}

pub(super) const COUNT_BY_STATUS: &str = "SELECT count(*) FROM messages WHERE status = ?1";

/// Message counts by status (every status present, zero included).
pub fn counts_by_status(conn: &Connection) -> Result<Vec<(MessageStatus, i64)>, StorageError> {
    let mut stmt = conn.prepare_cached(COUNT_BY_STATUS)?;
    MessageStatus::ALL.into_iter().map(|s| Ok((s, stmt.query_row([s.code()], |r| r.get(0))?))).collect()
}

/// The messages of one status that share a failure code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    /// The code (`None`: none recorded).
    pub error_code: Option<String>,
    /// How many messages.
    pub count: i64,
    /// The most recently changed one: its id, when, why, and its meter and site.
    pub newest_id: i64,
    /// Unix ms.
    pub newest_at: i64,
    /// Its `error_message`.
    pub newest_error: Option<String>,
    /// Its meter.
    pub newest_meter_id: String,
    /// Its site.
    pub newest_site_id: String,
    /// Its local market.
    pub newest_local_market: String,
    /// Distinct meters in the group.
    pub meters: i64,
    /// Distinct sites in the group.
    pub sites: i64,
}

/// The `status` messages (failed or rejected) grouped by `error_code`,
/// largest group first (then newest), at most `limit` groups.
pub fn failure_groups(
    conn: &Connection,
    status: MessageStatus,
    limit: usize,
) -> Result<Vec<FailureGroup>, StorageError> {
    // With one max() aggregate, SQLite takes the bare columns from the row
    // holding the maximum: the newest message's details.
    let mut stmt = conn.prepare_cached(
        "SELECT g.error_code, g.n, g.id, g.newest, g.error_message,
                (SELECT meter_id FROM meters WHERE id = g.meter), (SELECT site_id FROM sites WHERE id = g.site),
                (SELECT local_market FROM feeds WHERE id = g.feed), g.meters, g.sites
         FROM (SELECT error_code, count(*) AS n, id, max(updated_at) AS newest, error_message, meter, site, feed,
                      count(DISTINCT meter) AS meters, count(DISTINCT site) AS sites
               FROM messages WHERE status = ?1 GROUP BY error_code) g
         ORDER BY g.n DESC, g.newest DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![status.code(), limit as i64], |r| {
        Ok(FailureGroup {
            error_code: r.get(0)?,
            count: r.get(1)?,
            newest_id: r.get(2)?,
            newest_at: r.get(3)?,
            newest_error: r.get(4)?,
            newest_meter_id: r.get(5)?,
            newest_site_id: r.get(6)?,
            newest_local_market: r.get(7)?,
            meters: r.get(8)?,
            sites: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Delivery figures for the dashboard.
#[derive(Debug, Clone, Default)]
pub struct DeliveryStats {
    /// Deliveries since `since`.
    pub delivered: i64,
    /// Of those, deliveries of messages eSight has since rejected (the
    /// by-status counts show them as `rejected`, not `delivered`).
    pub delivered_later_rejected: i64,
    /// Acceptance time of the oldest pending message (Unix ms).
    pub oldest_pending_created: Option<i64>,
    /// Per minute since `since`: (minute start ms, delivered, retry, failed).
    pub per_minute: Vec<(i64, i64, i64, i64)>,
}

/// Acceptance time of the oldest pending message (Unix ms).
pub fn oldest_pending_created(conn: &Connection) -> Result<Option<i64>, StorageError> {
    let oldest: Option<i64> =
        conn.query_row("SELECT min(id) FROM messages WHERE status = 0", [], |r| r.get(0))?;
    Ok(oldest.map(super::ids::millis_of))
}

/// Delivery statistics since `since` (Unix ms).
pub fn delivery_stats(conn: &Connection, since: i64) -> Result<DeliveryStats, StorageError> {
    let delivered = conn.query_row(
        "SELECT count(*) FROM delivery_attempts WHERE at >= ?1 AND outcome = 0",
        [since],
        |r| r.get(0),
    )?;
    let delivered_later_rejected = conn.query_row(
        "SELECT count(*) FROM delivery_attempts a JOIN messages m ON m.id = a.message
         WHERE a.at >= ?1 AND a.outcome = 0 AND m.status = 4",
        [since],
        |r| r.get(0),
    )?;
    let oldest_pending_created = oldest_pending_created(conn)?;
    let mut stmt = conn.prepare_cached(
        "SELECT at / 60000 * 60000 AS minute,
                sum(outcome = 0), sum(outcome = 1), sum(outcome = 2)
         FROM delivery_attempts WHERE at >= ?1 GROUP BY minute ORDER BY minute",
    )?;
    let per_minute = stmt
        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    Ok(DeliveryStats { delivered, delivered_later_rejected, oldest_pending_created, per_minute })
}
