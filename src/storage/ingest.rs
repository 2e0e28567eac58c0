//! The ingest writer: one thread that owns a write connection and commits
//! messages in groups. Concurrent requests queue their batches; the thread
//! takes everything queued (up to a cap), stores it in one transaction with one
//! fsync, then answers every request. A request is answered only after the
//! commit that holds its messages — "accepted" means on disk.
//!
//! The writer also checkpoints the WAL, between groups and after answering:
//! a checkpoint from another thread never catches up with a writer that
//! commits continuously, so the WAL would only grow, every commit would
//! append to new file blocks (allocation, zeroing, a journal commit in each
//! fsync) and the file would eat the disk. Checkpointing here, whenever the
//! WAL holds more than `CHECKPOINT_AFTER_PAGES`, lets SQLite restart the WAL
//! from its beginning so commits overwrite blocks already on disk.

use std::cell::Cell;
use std::ffi::c_int;
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::ids::IdGenerator;
use super::messages::{self, NewMessage, SameContent, StoreOutcome};
use super::{Storage, StorageError};
use crate::clock::now_millis;

/// Items per transaction at most; more queued work waits for the next one.
const MAX_GROUP_ITEMS: usize = 8192;
/// Queued requests at most before senders wait (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// WAL size (in pages) above which the writer checkpoints after a group.
const CHECKPOINT_AFTER_PAGES: c_int = 2000;

thread_local! {
    /// Pages in the WAL after the writer's last commit (set by the WAL hook,
    /// which SQLite calls on the committing thread).
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// Why a batch was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The disk is full or the database read-only.
    #[error("storage is not writable")]
    Unwritable,
    /// Any other storage failure (logged by the writer).
    #[error("storage failed")]
    Failed,
    /// The writer has stopped (shutdown).
    #[error("the ingest writer has stopped")]
    Stopped,
}

struct Job {
    items: Vec<NewMessage>,
    reply: oneshot::Sender<Result<Vec<StoreOutcome>, IngestError>>,
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct IngestWriter {
    queue: mpsc::Sender<Job>,
}

impl IngestWriter {
    /// Starts the writer thread on its own connection to `storage`'s
    /// database. `on_commit(n)` runs after each commit that inserted `n > 0`
    /// new messages (it wakes the delivery workers).
    pub fn start(
        storage: &Storage,
        same_content: SameContent,
        on_commit: impl Fn(usize) + Send + 'static,
    ) -> Result<(Self, JoinHandle<()>), StorageError> {
        let conn = storage.open_connection()?;
        // Checkpoints run between groups (see `checkpoint_if_large`), never
        // inside an ingest commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After the pragma, which installs a hook of its own.
        conn.wal_hook(Some(note_wal_pages));
        // The indexes of a large table must stay in memory for inserts to be
        // cheap: 64 MiB of page cache for this one connection.
        conn.pragma_update(None, "cache_size", -65_536)?;
        let ids = IdGenerator::after(messages::max_id(&conn)?);
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || run(conn, ids, rx, same_content, on_commit))
            .map_err(|source| StorageError::Io {
                context: "cannot start the ingest writer".into(),
                source,
            })?;
        Ok((Self { queue }, thread))
    }

    /// Stores `items`; resolves once they are committed to disk.
    pub async fn store(&self, items: Vec<NewMessage>) -> Result<Vec<StoreOutcome>, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job { items, reply }).await.map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }
}

fn run(
    mut conn: Connection,
    mut ids: IdGenerator,
    mut rx: mpsc::Receiver<Job>,
    same_content: SameContent,
    on_commit: impl Fn(usize),
) {
    while let Some(first) = rx.blocking_recv() {
        let mut total = first.items.len();
        let mut jobs = vec![first];
        while total < MAX_GROUP_ITEMS {
            match rx.try_recv() {
                Ok(job) => {
                    total += job.items.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        match commit_group(&mut conn, &mut ids, &jobs, same_content) {
            Ok(per_job) => {
                let inserted =
                    per_job.iter().flatten().filter(|o| matches!(o, StoreOutcome::Inserted(_))).count();
                for (job, outcomes) in jobs.into_iter().zip(per_job) {
                    let _ = job.reply.send(Ok(outcomes));
                }
                if inserted > 0 {
                    on_commit(inserted);
                }
                checkpoint_if_large(&conn);
            }
            Err(e) => {
                let failure = if e.is_unwritable() { IngestError::Unwritable } else { IngestError::Failed };
                tracing::error!(error = %e, requests = jobs.len(), "ingest commit failed");
                for job in jobs {
                    let _ = job.reply.send(Err(failure));
                }
            }
        }
    }
}

fn commit_group(
    conn: &mut Connection,
    ids: &mut IdGenerator,
    jobs: &[Job],
    same_content: SameContent,
) -> Result<Vec<Vec<StoreOutcome>>, StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_millis();
    let mut per_job = Vec::with_capacity(jobs.len());
    for job in jobs {
        per_job.push(messages::store_batch(&tx, ids, now, &job.items, same_content)?);
    }
    tx.commit()?;
    Ok(per_job)
}

/// Copies the WAL into the database once it is large, so that the next
/// commit can start the WAL over (see the module comment). Passive: it never
/// waits for readers; what it cannot copy now is copied next time.
fn checkpoint_if_large(conn: &Connection) {
    if WAL_PAGES.get() < CHECKPOINT_AFTER_PAGES {
        return;
    }
    WAL_PAGES.set(0);
    let result = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
    match result {
        Ok((log, copied)) if copied < log => {
            tracing::debug!(log, copied, "WAL checkpoint could not copy every page yet");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}
