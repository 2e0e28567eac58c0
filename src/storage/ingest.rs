//! The ingest writer: one thread that owns a write connection and commits
//! messages in groups. Concurrent requests queue their batches; the thread
//! takes everything queued (up to a cap), stores it in one transaction with one
//! fsync, then answers every request. A request is answered only after the
//! commit that holds its messages — "accepted" means on disk.
//!
//! The writer also keeps the WAL small. A checkpoint from another thread
//! never catches up with a writer that commits continuously, so the WAL would
//! only grow, every commit would append to new file blocks (allocation,
//! zeroing, a journal commit in each fsync) and the file would eat the disk.
//! So, after answering a group: past `CHECKPOINT_SOON_PAGES`, after a large
//! group, the writer asks its checkpointer thread to copy the WAL into the
//! database (in parallel with the next groups); past `CHECKPOINT_NOW_PAGES`
//! it checkpoints itself
//! — only the few frames the checkpointer has not copied yet — which lets
//! SQLite restart the WAL from its beginning, so commits overwrite blocks
//! already on disk. Both checkpoints are PASSIVE, which Litestream tolerates
//! (it holds a read transaction so nobody checkpoints past what it copied).
//!
//! With `replication.acknowledge = "replicated"` the answers of a committed
//! group go to the replication barrier instead of straight back: they are
//! released once Litestream confirms the replica holds the commit, while
//! this thread goes on committing the next groups (one confirmation covers
//! every group before it).

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::ids::IdGenerator;
use super::messages::{self, Dimensions, NewMessage, SameContent, StoreOutcome};
use super::{Storage, StorageError};
use crate::clock::now_millis;
use crate::replication::{Barrier, Unconfirmed};

/// Items per transaction at most; more queued work waits for the next one.
const MAX_GROUP_ITEMS: usize = 8192;
/// Queued requests at most before senders wait (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// Groups of at least this many messages hand the checkpoint to the
/// checkpointer thread. Measured: large groups (arrays of messages) write
/// mostly distinct pages and keep the writer busy, so copying them in
/// parallel raised arrays of 100 from ~100,000 to ~110,000 messages/s; small
/// groups rewrite the same few pages, and a parallel copy repeated on every
/// commit cost more CPU than it saved (single messages: −20 %).
const LARGE_GROUP_ITEMS: usize = 512;
/// WAL size (in pages) above which the checkpointer thread copies the WAL
/// (after a large group).
const CHECKPOINT_SOON_PAGES: c_int = 1000;
/// WAL size (in pages) above which the writer finishes the checkpoint itself
/// between two groups, so that the WAL restarts.
const CHECKPOINT_NOW_PAGES: c_int = 2000;

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// Committed locally, but the replica did not confirm in time
    /// (`acknowledge = "replicated"`).
    #[error(transparent)]
    Unreplicated(#[from] Unconfirmed),
}

/// What the writer does with a committed group's answers.
#[derive(Clone, Default)]
pub enum Acknowledgement {
    /// Answer at once: the commit is on the local disk.
    #[default]
    Local,
    /// Answer at once and tell replication a commit happened (for its lag).
    LocalReplicated(Barrier),
    /// Answer once the replica confirms the commit.
    Replicated(Barrier),
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
        acknowledgement: Acknowledgement,
        on_commit: impl Fn(usize) + Send + 'static,
    ) -> Result<(Self, JoinHandle<()>), StorageError> {
        let conn = storage.open_writer_connection()?;
        // Checkpoints run between groups (see `checkpoint_if_large`), never
        // inside an ingest commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After the pragma, which installs a hook of its own.
        conn.wal_hook(Some(note_wal_pages));
        // 16 MiB of page cache for this one connection (SQLite's default is
        // 2 MiB). It was 64 MiB; measured side by side (`benches/ingest.sh
        // 10s`, two runs each, ~400k rows): 28.3k/20.2k req/s at 64 MiB
        // against 24.1k/24.9k at 16 MiB — no difference above the noise —
        // while the larger cache filled with the table's pages and made up
        // half of the server's resident memory after 60k messages.
        conn.pragma_update(None, "cache_size", -16_384)?;
        let ids = IdGenerator::after(messages::max_id(&conn)?);
        let checkpointer = Checkpointer::start(storage.open_connection()?)?;
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || {
                run(
                    conn,
                    Writer { ids, dims: Dimensions::new() },
                    rx,
                    same_content,
                    &acknowledgement,
                    on_commit,
                    &checkpointer,
                );
                checkpointer.stop();
            })
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

/// What the writer keeps between groups.
struct Writer {
    ids: IdGenerator,
    dims: Dimensions,
}

fn run(
    mut conn: Connection,
    mut w: Writer,
    mut rx: mpsc::Receiver<Job>,
    same_content: SameContent,
    acknowledgement: &Acknowledgement,
    on_commit: impl Fn(usize),
    checkpointer: &Checkpointer,
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
        match commit_group(&mut conn, &mut w, &jobs, same_content) {
            Ok(per_job) => {
                let inserted =
                    per_job.iter().flatten().filter(|o| matches!(o, StoreOutcome::Inserted(_))).count();
                answer(acknowledgement, jobs, per_job);
                if inserted > 0 {
                    on_commit(inserted);
                }
                keep_wal_small(&conn, checkpointer, total);
            }
            Err(e) => {
                // Rolled back: references it inserted are gone again.
                w.dims.forget();
                let failure = if e.is_unwritable() { IngestError::Unwritable } else { IngestError::Failed };
                tracing::error!(error = %e, requests = jobs.len(), "ingest commit failed");
                for job in jobs {
                    let _ = job.reply.send(Err(failure.clone()));
                }
            }
        }
    }
}

/// Answers a committed group now, or hands its answers to the replication
/// barrier (and goes on with the next group).
fn answer(acknowledgement: &Acknowledgement, jobs: Vec<Job>, per_job: Vec<Vec<StoreOutcome>>) {
    let answers: Vec<_> = jobs.into_iter().map(|j| j.reply).zip(per_job).collect();
    match acknowledgement {
        Acknowledgement::Replicated(barrier) => barrier.after_replicated(Box::new(move |outcome| {
            for (reply, outcomes) in answers {
                let _ = reply.send(outcome.clone().map(|()| outcomes).map_err(IngestError::from));
            }
        })),
        other => {
            if let Acknowledgement::LocalReplicated(barrier) = other {
                barrier.note_commit();
            }
            for (reply, outcomes) in answers {
                let _ = reply.send(Ok(outcomes));
            }
        }
    }
}

fn commit_group(
    conn: &mut Connection,
    w: &mut Writer,
    jobs: &[Job],
    same_content: SameContent,
) -> Result<Vec<Vec<StoreOutcome>>, StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_millis();
    let mut per_job = Vec::with_capacity(jobs.len());
    for job in jobs {
        per_job.push(messages::store_batch(&tx, &mut w.ids, &mut w.dims, now, &job.items, same_content)?);
    }
    tx.commit()?;
    Ok(per_job)
}

/// After a group: hands the WAL to the checkpointer once it is large, and
/// finishes the checkpoint here once it is larger (see the module comment).
fn keep_wal_small(conn: &Connection, checkpointer: &Checkpointer, group_items: usize) {
    let pages = WAL_PAGES.get();
    if pages >= CHECKPOINT_NOW_PAGES {
        WAL_PAGES.set(0);
        checkpoint(conn);
    } else if pages >= CHECKPOINT_SOON_PAGES && group_items >= LARGE_GROUP_ITEMS {
        checkpointer.request();
    }
}

/// A passive checkpoint: it never waits for readers or for another
/// checkpoint (`SQLITE_BUSY` then); what it cannot copy now is copied later.
fn checkpoint(conn: &Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match result {
        Ok((busy, log, copied)) if busy != 0 || copied < log => {
            tracing::debug!(log, copied, "WAL checkpoint could not copy every page yet");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

/// The thread that copies the WAL into the database while the writer goes on
/// committing. Requests coalesce: one pending at most.
struct Checkpointer {
    requests: SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(conn: Connection) -> Result<Self, StorageError> {
        let (requests, pending) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("wal-checkpointer".into())
            .spawn(move || {
                while pending.recv().is_ok() {
                    checkpoint(&conn);
                }
            })
            .map_err(|source| StorageError::Io {
                context: "cannot start the WAL checkpointer".into(),
                source,
            })?;
        Ok(Self { requests, thread })
    }

    /// Asks for a checkpoint unless one is already asked for.
    fn request(&self) {
        match self.requests.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => tracing::warn!("the WAL checkpointer has stopped"),
        }
    }

    /// Ends the thread after the checkpoint in hand.
    fn stop(self) {
        drop(self.requests);
        let _ = self.thread.join();
    }
}
