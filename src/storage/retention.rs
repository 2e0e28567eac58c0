//! Message retention in chunks. A [`RetentionPass`] deletes finished
//! messages older than their cutoffs (delivered ones by `delivered_at`,
//! failed and rejected ones by `updated_at`; their attempts go with them,
//! report links are unset) one chunk at a time. The caller decides when the
//! next chunk runs and may stop between any two: the ingest writer runs them
//! inside its commit groups' transactions while requests keep coming, and
//! in transactions of their own once it is idle (see `storage::ingest`), so
//! retention and ingest never wait for each other's write lock.
//!
//! A chunk deletes one message at a time (by id, oldest first) until it has
//! deleted its row cap or used its time budget, whichever comes first: a
//! deleted row dirties ~3 random pages (the messageId, meter and site
//! indexes), so its cost varies with the page cache, and a time budget bounds
//! what a chunk adds to the commit that carries it (see BENCHMARKS.md, data
//! growth). A chunk runs in the caller's transaction when there is one (and
//! rolls back with it), else in one of its own.

use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use super::StorageError;
use super::ids::first_id_at;
use super::message_queries::MessageStatus;

/// Rows per chunk at most by default; the time budget the caller gives a
/// chunk usually ends it first (see BENCHMARKS.md, data growth).
pub const DEFAULT_CHUNK_ROWS: i64 = 100;

/// Candidate ids read per query; a chunk that stops early leaves the rest
/// for the next one.
const CANDIDATES: i64 = 32;

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

    /// Chunks run so far.
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// Deletes the next chunk (at most `chunk_rows` messages) without a
    /// time budget; see [`RetentionPass::step_within`].
    pub fn step(&mut self, conn: &Connection) -> Result<usize, StorageError> {
        self.step_within(conn, None)
    }

    /// Deletes the next chunk: messages of the current status's phase, oldest
    /// first, one at a time, until `chunk_rows` are deleted or `budget` (if
    /// any) has passed — at least one row is deleted when one is due. Runs
    /// in `conn`'s open transaction if there is one, else in its own
    /// (`IMMEDIATE`). Returns how many it deleted; a chunk that runs out of
    /// due rows ends its status's phase. On an error the pass is as before
    /// the chunk (the caller's transaction, or the chunk's own, rolls the
    /// rows back). Does nothing once [`RetentionPass::is_done`].
    ///
    /// Ids are time-ordered, and a message finished before a cutoff was
    /// created before it, so each chunk walks only the rows of one status
    /// created before the cutoff (`messages_by_status`), oldest first.
    pub fn step_within(
        &mut self,
        conn: &Connection,
        budget: Option<Duration>,
    ) -> Result<usize, StorageError> {
        if self.is_done() {
            return Ok(0);
        }
        let started = Instant::now();
        let before = self.clone();
        let own = if conn.is_autocommit() {
            Some(Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?)
        } else {
            None
        };
        let result = self.delete_chunk(conn, budget.map(|b| started + b));
        let result = match (result, own) {
            (Ok(n), Some(tx)) => tx.commit().map(|()| n).map_err(StorageError::from),
            (result, _) => result,
        };
        if result.is_err() {
            *self = before;
        }
        result
    }

    /// [`RetentionPass::step_within`] inside `tx` under a savepoint: a
    /// failing chunk is rolled back alone, and what `tx` did before stays
    /// for its commit. If `tx` is rolled back later, the chunk goes with it;
    /// the caller then restores the pass it had before.
    pub fn step_under_savepoint(
        &mut self,
        tx: &mut Transaction<'_>,
        budget: Option<Duration>,
    ) -> Result<usize, StorageError> {
        let sp = tx.savepoint()?;
        let n = self.step_within(&sp, budget)?; // on error, dropping `sp` rolls back to it
        sp.commit()?;
        Ok(n)
    }

    fn delete_chunk(&mut self, conn: &Connection, deadline: Option<Instant>) -> Result<usize, StorageError> {
        let (status, column) = PHASES[self.phase];
        let cutoff = if self.phase == 0 { self.delivered_before } else { self.failed_before };
        let status = status.code();
        let mut select = conn.prepare_cached(&format!(
            "SELECT id FROM messages WHERE status = {status} AND id < ?2 AND {column} < ?1 ORDER BY id LIMIT ?3"
        ))?;
        let mut delete = conn.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
        let mut n = 0;
        let mut phase_over = false;
        'chunk: while (n as i64) < self.chunk_rows {
            let want = CANDIDATES.min(self.chunk_rows - n as i64);
            let ids: Vec<i64> = select
                .query_map(params![cutoff, first_id_at(cutoff), want], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for (i, id) in ids.iter().enumerate() {
                n += delete.execute([id])?;
                let last = i + 1 == ids.len();
                if deadline.is_some_and(|d| Instant::now() >= d) && !last {
                    break 'chunk;
                }
                if last && (ids.len() as i64) < want {
                    phase_over = true;
                }
            }
            if ids.is_empty() {
                phase_over = true;
            }
            if phase_over || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        self.chunks += 1;
        self.deleted += n;
        if phase_over {
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
