//! Message retention in chunks. A [`RetentionPass`] deletes finished
//! messages older than their cutoffs (delivered ones by `delivered_at`,
//! failed and rejected ones by `updated_at`; their attempts and report links
//! go with them) one chunk of rows at a time, each chunk one short
//! statement of its own. The caller decides when the next chunk runs and may
//! stop between any two: the ingest writer runs them between its commit
//! groups (see `storage::ingest`), so retention and ingest never wait for
//! each other's write lock.

use rusqlite::{Connection, params};

use super::StorageError;
use super::ids::first_id_at;
use super::message_queries::MessageStatus;

/// Rows per chunk by default: measured at 10 million stored messages, a
/// chunk of 100 deletes in ~1–3 ms (see BENCHMARKS.md, data growth), short
/// enough to slip between two ingest groups.
pub const DEFAULT_CHUNK_ROWS: i64 = 100;

/// The statuses a pass goes through, in order, and the column each one's
/// cutoff applies to.
const PHASES: [(MessageStatus, &str); 3] = [
    (MessageStatus::Delivered, "delivered_at"),
    (MessageStatus::Failed, "updated_at"),
    (MessageStatus::Rejected, "updated_at"),
];

/// One retention pass over `messages`, advanced a chunk at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPass {
    delivered_before: i64,
    failed_before: i64,
    chunk_rows: i64,
    phase: usize,
    deleted: usize,
    chunks: usize,
}

impl RetentionPass {
    /// A pass deleting messages delivered before `delivered_before` and
    /// failed/rejected ones last changed before `failed_before` (Unix ms),
    /// at most `chunk_rows` (at least 1) per chunk.
    pub fn new(delivered_before: i64, failed_before: i64, chunk_rows: i64) -> Self {
        Self {
            delivered_before,
            failed_before,
            chunk_rows: chunk_rows.max(1),
            phase: 0,
            deleted: 0,
            chunks: 0,
        }
    }

    /// True once every status has been gone through.
    pub fn is_done(&self) -> bool {
        self.phase >= PHASES.len()
    }

    /// Messages deleted so far.
    pub fn deleted(&self) -> usize {
        self.deleted
    }

    /// Chunks run so far (each one statement, one transaction).
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// Deletes the next chunk (at most `chunk_rows` messages) in its own
    /// transaction; returns how many it deleted. A chunk that finds fewer
    /// rows than it may delete ends its status's phase. Does nothing once
    /// [`RetentionPass::is_done`].
    ///
    /// Ids are time-ordered, and a message finished before a cutoff was
    /// created before it, so each chunk walks only the rows of one status
    /// created before the cutoff (`messages_by_status`), oldest first.
    pub fn step(&mut self, conn: &Connection) -> Result<usize, StorageError> {
        let Some(&(status, column)) = PHASES.get(self.phase) else { return Ok(0) };
        let before = if self.phase == 0 { self.delivered_before } else { self.failed_before };
        let status = status.code();
        let sql = format!(
            "DELETE FROM messages WHERE id IN (
                 SELECT id FROM messages WHERE status = {status} AND id < ?2 AND {column} < ?1
                 ORDER BY id LIMIT ?3)"
        );
        let n = conn.prepare_cached(&sql)?.execute(params![before, first_id_at(before), self.chunk_rows])?;
        self.chunks += 1;
        self.deleted += n;
        if (n as i64) < self.chunk_rows {
            self.phase += 1;
        }
        Ok(n)
    }

    /// Runs the pass to its end; returns the messages deleted in total.
    pub fn run_to_end(&mut self, conn: &Connection) -> Result<usize, StorageError> {
        while !self.is_done() {
            self.step(conn)?;
        }
        Ok(self.deleted)
    }
}

#[cfg(test)]
mod tests;
