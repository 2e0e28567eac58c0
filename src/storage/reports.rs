//! Typed queries on `esight_errors` (eSight's error reports) and
//! `quarantine` (report bodies that could not be parsed, kept for people).
//!
//! Storing a report is idempotent on eSight's `_id` and, when the report
//! names one of our messages, marks that message `rejected` in the same
//! transaction (see [`store_report`] for the state rule).

#[cfg(test)]
mod tests;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::StorageError;
use crate::domain::error_report::ErrorReport;

/// `messages.error_code` of a rejected message when the report names no
/// `errorCode`.
pub const FALLBACK_ERROR_CODE: &str = "EsightRejected";

/// A parsed error report ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// eSight's `_id`: the idempotency key.
    pub esight_id: String,
    /// `header.messageId` as reported (`<messageId>_<id>`).
    pub message_ref: String,
    /// The part of `message_ref` after its last `_`, if any; it correlates
    /// only when it parses as an id of a stored message.
    pub correlated: Option<String>,
    /// Number of entries in `errors`.
    pub error_count: i64,
    /// The first `errorCode` reported, if any entry has one.
    pub error_code: Option<String>,
    /// The body exactly as received.
    pub body: Vec<u8>,
    /// When it arrived (Unix ms).
    pub received_at: i64,
}

impl NewReport {
    /// Builds the row for `report`, whose raw body was `body`.
    pub fn from_report(report: &ErrorReport, body: Vec<u8>, received_at: i64) -> Self {
        Self {
            esight_id: report.esight_id().to_owned(),
            message_ref: report.message_id().to_owned(),
            correlated: report.correlated_id().map(str::to_owned),
            error_count: i64::try_from(report.errors().len()).unwrap_or(i64::MAX),
            error_code: report.errors().iter().find_map(|e| e.error_code()).map(str::to_owned),
            body,
            received_at,
        }
    }
}

/// The answer to storing a report; the same for every repeat of one `_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// Our id of the stored report.
    pub id: i64,
    /// eSight's `_id`.
    pub esight_id: String,
    /// `header.messageId` as first reported.
    pub message_ref: String,
    /// The message the report was correlated to, if any.
    pub message: Option<i64>,
    /// False when this `_id` had been stored before (nothing was stored now).
    pub first_time: bool,
}

/// A stored report with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// Our id.
    pub id: i64,
    /// eSight's `_id`.
    pub esight_id: String,
    /// `header.messageId` as reported.
    pub message_ref: String,
    /// The correlated message; `None` when uncorrelated or since pruned.
    pub message: Option<i64>,
    /// When it arrived (Unix ms).
    pub received_at: i64,
    /// Number of entries in `errors`.
    pub error_count: i64,
    /// The body exactly as received.
    pub body: Vec<u8>,
}

/// Filters for [`list_reports`]; every field set narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFilter {
    /// Only reports correlated to this message.
    pub message: Option<i64>,
    /// Only the report with this `_id`.
    pub esight_id: Option<String>,
    /// Received at or after (Unix ms).
    pub since: Option<i64>,
    /// Received before (Unix ms).
    pub until: Option<i64>,
    /// Only ids below this (pagination cursor).
    pub before_id: Option<i64>,
}

/// Stores `r` in one immediate transaction, idempotently on its `_id`.
///
/// A repeated `_id` answers the first stored answer and changes nothing.
/// Otherwise the report is stored, and if its id suffix names a stored
/// message the report is linked to it. That message becomes `rejected`
/// (with `error_code` the first reported `errorCode`, or
/// [`FALLBACK_ERROR_CODE`]) when eSight can have received it:
///
/// - `delivered`: the contract's transition;
/// - `delivering`: the report raced the worker recording eSight's `2xx`
///   (eSight only learns the `<messageId>_<id>` form from our POST, so the
///   report proves receipt). The lease is cleared; the worker's later
///   settlement must then only update rows still `delivering`;
/// - `pending` with at least one attempt: an earlier attempt reached eSight
///   although we saw a timeout or `5xx`; resending would only repeat data
///   eSight refused.
///
/// A `pending` message never attempted, a `failed` one (we gave up, with our
/// own code) and an already `rejected` one keep their state and fields: the
/// report is still linked and shows in the message's detail.
pub fn store_report(conn: &mut Connection, r: &NewReport) -> Result<StoredReport, StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let first = tx
        .query_row(
            "SELECT id, esight_id, message_ref, message FROM esight_errors WHERE esight_id = ?1",
            [&r.esight_id],
            |row| {
                Ok(StoredReport {
                    id: row.get(0)?,
                    esight_id: row.get(1)?,
                    message_ref: row.get(2)?,
                    message: row.get(3)?,
                    first_time: false,
                })
            },
        )
        .optional()?;
    if let Some(first) = first {
        return Ok(first);
    }
    let candidate = r.correlated.as_deref().and_then(|s| s.parse::<i64>().ok());
    let message = match candidate {
        Some(id) => {
            tx.query_row("SELECT id FROM messages WHERE id = ?1", [id], |row| row.get(0)).optional()?
        }
        None => None,
    };
    tx.execute(
        "INSERT INTO esight_errors (esight_id, message_ref, message, received_at, error_count, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![r.esight_id, r.message_ref, message, r.received_at, r.error_count, r.body],
    )?;
    let id = tx.last_insert_rowid();
    if let Some(message) = message {
        let code = r.error_code.as_deref().unwrap_or(FALLBACK_ERROR_CODE);
        let text = format!("eSight reported {} error(s) in report {}", r.error_count, r.esight_id);
        tx.execute(
            "UPDATE messages SET status = 4, updated_at = ?2, error_code = ?3, error_message = ?4,
                    lease_until = NULL, next_attempt_at = NULL
             WHERE id = ?1
               AND (status IN (2, 1) OR (status = 0 AND attempts > 0))",
            params![message, r.received_at, code, text],
        )?;
    }
    tx.commit()?;
    Ok(StoredReport {
        id,
        esight_id: r.esight_id.clone(),
        message_ref: r.message_ref.clone(),
        message,
        first_time: true,
    })
}

const REPORT_COLUMNS: &str = "id, esight_id, message_ref, message, received_at, error_count, body";

fn report_from(row: &Row<'_>) -> rusqlite::Result<ReportRow> {
    Ok(ReportRow {
        id: row.get(0)?,
        esight_id: row.get(1)?,
        message_ref: row.get(2)?,
        message: row.get(3)?,
        received_at: row.get(4)?,
        error_count: row.get(5)?,
        body: row.get(6)?,
    })
}

/// Lists reports newest first, at most `limit`.
pub fn list_reports(
    conn: &Connection,
    f: &ReportFilter,
    limit: usize,
) -> Result<Vec<ReportRow>, StorageError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REPORT_COLUMNS} FROM esight_errors
         WHERE (?1 IS NULL OR message = ?1) AND (?2 IS NULL OR esight_id = ?2)
           AND (?3 IS NULL OR received_at >= ?3) AND (?4 IS NULL OR received_at < ?4)
           AND (?5 IS NULL OR id < ?5)
         ORDER BY id DESC LIMIT ?6"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows =
        stmt.query_map(params![f.message, f.esight_id, f.since, f.until, f.before_id, limit], report_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One report by our id.
pub fn report_by_id(conn: &Connection, id: i64) -> Result<Option<ReportRow>, StorageError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {REPORT_COLUMNS} FROM esight_errors WHERE id = ?1"))?;
    Ok(stmt.query_row([id], report_from).optional()?)
}

/// Every report correlated to `message`, oldest first (for its detail).
pub fn reports_for_message(conn: &Connection, message: i64) -> Result<Vec<ReportRow>, StorageError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REPORT_COLUMNS} FROM esight_errors WHERE message = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([message], report_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A refused report body to keep for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQuarantine {
    /// When it arrived (Unix ms).
    pub received_at: i64,
    /// The request id it arrived with.
    pub request_id: Option<String>,
    /// The contract code it was refused with (`InvalidJsonReceived`).
    pub code: String,
    /// Why, in words safe to show.
    pub reason: String,
    /// The full body size in bytes (the stored copy may be shorter).
    pub size: i64,
    /// The body, already capped by the caller.
    pub body: Vec<u8>,
}

/// A quarantined body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRow {
    /// Our id.
    pub id: i64,
    /// When it arrived (Unix ms).
    pub received_at: i64,
    /// The request id it arrived with.
    pub request_id: Option<String>,
    /// The contract code it was refused with.
    pub code: String,
    /// Why.
    pub reason: String,
    /// The full body size in bytes.
    pub size: i64,
    /// The stored (capped) copy of the body.
    pub body: Vec<u8>,
}

/// Keeps a refused body; returns its id.
pub fn quarantine(conn: &Connection, q: &NewQuarantine) -> Result<i64, StorageError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO quarantine (received_at, request_id, code, reason, size, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    stmt.execute(params![q.received_at, q.request_id, q.code, q.reason, q.size, q.body])?;
    Ok(conn.last_insert_rowid())
}

/// Lists quarantined bodies newest first, at most `limit`, only ids below
/// `before_id` when given (pagination cursor).
pub fn list_quarantine(
    conn: &Connection,
    before_id: Option<i64>,
    limit: usize,
) -> Result<Vec<QuarantineRow>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, received_at, request_id, code, reason, size, body FROM quarantine
         WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![before_id, limit], |row| {
        Ok(QuarantineRow {
            id: row.get(0)?,
            received_at: row.get(1)?,
            request_id: row.get(2)?,
            code: row.get(3)?,
            reason: row.get(4)?,
            size: row.get(5)?,
            body: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
