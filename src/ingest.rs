//! Accepting messages: parse a body (one message or an array) into typed
//! messages, store the valid ones through the group-commit writer, and
//! report each item as accepted (with its id, or the first id for a
//! duplicate) or rejected (with the contract's code). No HTTP here.

use bytes::Bytes;
use serde::Serialize;

use crate::domain::message::{BatchError, Message, parse_batch};
use crate::storage::ingest::{IngestError, IngestWriter};
use crate::storage::messages::{MessageStatus, NewMessage, StoreOutcome, StoredBody};

/// What storing a validated message needs from it; the body is packed here,
/// on the caller's thread, not on the single ingest writer.
pub fn to_new_message(m: Message) -> NewMessage {
    NewMessage {
        message_id: m.message_id().to_owned(),
        meter_id: m.meter_id().to_owned(),
        site_id: m.site_id().to_owned(),
        local_market: m.local_market().to_owned(),
        data_feed_type: m.data_feed_type().to_owned(),
        datapoints: i64::try_from(m.datapoint_count()).unwrap_or(i64::MAX),
        body: StoredBody::pack(m.raw()),
    }
}

/// One accepted item.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// Position in the request (0 for a single message).
    pub index: usize,
    /// Our id (a string: 64-bit ids exceed JavaScript's exact integers).
    pub id: String,
    /// `header.messageId`.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// `pending` for a new message; the current status for a duplicate.
    pub status: MessageStatus,
    /// True when the same message was accepted before.
    pub duplicate: bool,
}

/// One rejected item.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// Position in the request.
    pub index: usize,
    /// The contract's code.
    pub code: String,
    /// Why, for people.
    pub message: String,
}

/// The answer to an ingest request.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestReport {
    /// Stored (or already stored) items.
    pub accepted: Vec<Accepted>,
    /// Refused items.
    pub rejected: Vec<Rejected>,
}

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestFailure {
    /// The body is not JSON or has too many items.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Storage could not commit.
    #[error(transparent)]
    Store(#[from] IngestError),
}

/// Validates and stores a request body.
pub async fn accept(writer: &IngestWriter, body: Bytes) -> Result<IngestReport, IngestFailure> {
    let items = parse_batch(body)?;
    let mut report = IngestReport::default();
    let mut to_store = Vec::with_capacity(items.len());
    let mut indexes = Vec::with_capacity(items.len());
    for (index, item) in items {
        match item {
            Ok(m) => {
                indexes.push(index);
                to_store.push(to_new_message(m));
            }
            Err(e) => report.rejected.push(Rejected {
                index,
                code: e.code.as_str().to_string(),
                message: e.message,
            }),
        }
    }
    if to_store.is_empty() {
        return Ok(report);
    }
    let ids: Vec<String> = to_store.iter().map(|m| m.message_id.clone()).collect();
    let outcomes = writer.store(to_store).await?;
    for ((index, message_id), outcome) in indexes.into_iter().zip(ids).zip(outcomes) {
        match outcome {
            StoreOutcome::Inserted(id) => report.accepted.push(Accepted {
                index,
                id: id.to_string(),
                message_id,
                status: MessageStatus::Pending,
                duplicate: false,
            }),
            StoreOutcome::Duplicate(id, status) => report.accepted.push(Accepted {
                index,
                id: id.to_string(),
                message_id,
                status,
                duplicate: true,
            }),
            StoreOutcome::Conflict(id) => report.rejected.push(Rejected {
                index,
                code: "Conflict".into(),
                message: format!(
                    "messageId {message_id} was accepted before with different content (id {id})"
                ),
            }),
        }
    }
    report.rejected.sort_by_key(|r| r.index);
    Ok(report)
}
