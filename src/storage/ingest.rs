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
//!
//! Message retention runs here too, a chunk of rows at a time
//! ([`RetentionPass`]), so that it never competes with ingest for SQLite's
//! one write lock. While requests keep coming, a chunk with a time budget of
//! [`BUSY_PRUNE_BUDGET`] runs inside a group's transaction, after its
//! inserts, at most every [`BUSY_PRUNE_EVERY`]: it shares the group's commit
//! and fsync instead of adding a commit of its own, and it rolls back with
//! the group (under a savepoint: a failing chunk never fails the group).
//! Once no request came for [`IDLE_BEFORE_PRUNE`] after the last answer, the
//! writer runs chunks of [`IDLE_PRUNE_BUDGET`] in transactions of their own,
//! looking at its queue between two. A pass in progress is abandoned
//! (between chunks) when the writer stops; the next pass continues where it
//! left off. While a pass is in hand, its deletes put random pages into the
//! WAL (messageId, meter and site indexes), so the checkpointer thread copies
//! the WAL from [`CHECKPOINT_SOON_PAGES`] on whatever the group size: a
//! writer that copied them itself stalled ingest for 10–40 ms per checkpoint
//! (measured at 10 million messages, BENCHMARKS.md, data growth).

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::hooks::Wal;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::ids::IdGenerator;
use super::messages::{self, Dimensions, NewMessage, SameContent, StoreOutcome};
use super::retention::RetentionPass;
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
/// While requests keep the writer busy, a group's transaction carries a
/// retention chunk at most this often (see BENCHMARKS.md, data growth, for
/// the pruning rate this gives).
pub const BUSY_PRUNE_EVERY: Duration = Duration::from_millis(10);
/// Time a chunk inside a group's transaction may take (it delays that
/// group's answers by as much).
pub const BUSY_PRUNE_BUDGET: Duration = Duration::from_micros(500);
/// Time an idle writer's chunk may take (plus its commit); a request that
/// arrives meanwhile waits that long at most.
pub const IDLE_PRUNE_BUDGET: Duration = Duration::from_millis(2);
/// The writer counts as idle, and runs retention chunks back to back, once
/// no request arrived for this long after it answered the last group.
pub const IDLE_BEFORE_PRUNE: Duration = Duration::from_millis(5);
/// `CHECKPOINT_NOW_PAGES` while a retention pass is in hand: pruned pages
/// are scattered over the file, so the checkpointer thread (asked from
/// `CHECKPOINT_SOON_PAGES` on) copies them while the writer goes on; the
/// writer finishes the copy itself only past this WAL size.
const PRUNING_CHECKPOINT_NOW_PAGES: c_int = 4 * CHECKPOINT_NOW_PAGES;
/// How often a running retention pass logs its progress (debug).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often an idle writer with a pass in hand looks at its queue.
const IDLE_POLL: Duration = Duration::from_micros(500);

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

/// What the writer's queue carries.
enum Work {
    Store(Job),
    Prune(Pruning),
}

/// A retention pass in the writer's hands.
struct Pruning {
    pass: RetentionPass,
    done: Sender<RetentionReport>,
    started: Instant,
    last_chunk: Instant,
    /// When the pass's progress was last logged (debug).
    last_progress: Instant,
}

/// How a retention pass run by the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    /// Messages deleted.
    pub deleted: usize,
    /// Chunks run (each inside a group's transaction or its own).
    pub chunks: usize,
    /// False when the pass stopped early (the writer stopped, or a chunk
    /// failed).
    pub finished: bool,
    /// From the pass's arrival at the writer to its end.
    pub elapsed: Duration,
}

/// Why a retention pass was not handed to the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetentionRefused {
    /// The writer's queue is full; try again later.
    #[error("the ingest writer is busy")]
    Busy,
    /// The writer has stopped (shutdown).
    #[error("the ingest writer has stopped")]
    Stopped,
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct IngestWriter {
    queue: mpsc::Sender<Work>,
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
        self.queue.send(Work::Store(Job { items, reply })).await.map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }

    /// Hands `pass` to the writer, which runs its chunks between commit
    /// groups (see the module comment); never blocks. The receiver gets the
    /// pass's report at its end (or early stop); it sees the sender dropped
    /// if another pass was still running (that one goes on).
    pub fn start_retention(
        &self,
        pass: RetentionPass,
    ) -> Result<Receiver<RetentionReport>, RetentionRefused> {
        let (done, report) = channel();
        let now = Instant::now();
        let work = Work::Prune(Pruning { pass, done, started: now, last_chunk: now, last_progress: now });
        match self.queue.try_send(work) {
            Ok(()) => Ok(report),
            Err(mpsc::error::TrySendError::Full(_)) => Err(RetentionRefused::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(RetentionRefused::Stopped),
        }
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
    mut rx: mpsc::Receiver<Work>,
    same_content: SameContent,
    acknowledgement: &Acknowledgement,
    on_commit: impl Fn(usize),
    checkpointer: &Checkpointer,
) {
    let mut pruning: Option<Pruning> = None;
    let mut last_work = Instant::now();
    loop {
        let work = if pruning.is_some() {
            match rx.try_recv() {
                Ok(work) => work,
                Err(TryRecvError::Empty) if last_work.elapsed() >= IDLE_BEFORE_PRUNE => {
                    // Idle: one chunk, then look at the queue again.
                    prune_chunk(&conn, &mut pruning, checkpointer);
                    continue;
                }
                Err(TryRecvError::Empty) => {
                    std::thread::sleep(IDLE_POLL);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.blocking_recv() {
                Some(work) => work,
                None => break,
            }
        };
        let first = match work {
            Work::Store(job) => job,
            Work::Prune(p) => {
                begin_pruning(&mut pruning, p);
                continue;
            }
        };
        let mut total = first.items.len();
        let mut jobs = vec![first];
        while total < MAX_GROUP_ITEMS {
            match rx.try_recv() {
                Ok(Work::Store(job)) => {
                    total += job.items.len();
                    jobs.push(job);
                }
                Ok(Work::Prune(p)) => begin_pruning(&mut pruning, p),
                Err(_) => break,
            }
        }
        // A retention chunk rides along in this group's transaction.
        let riding = pruning.as_mut().filter(|p| p.last_chunk.elapsed() >= BUSY_PRUNE_EVERY);
        let before = riding.as_ref().map(|p| p.pass.clone());
        match commit_group(&mut conn, &mut w, &jobs, same_content, riding.map(|p| &mut p.pass)) {
            Ok((per_job, chunk)) => {
                let inserted =
                    per_job.iter().flatten().filter(|o| matches!(o, StoreOutcome::Inserted(_))).count();
                answer(acknowledgement, jobs, per_job);
                if inserted > 0 {
                    on_commit(inserted);
                }
                if let Some(chunk) = chunk {
                    after_chunk(&mut pruning, chunk);
                }
                keep_wal_small(&conn, checkpointer, total, pruning.is_some());
            }
            Err(e) => {
                // Rolled back: references it inserted are gone again, and so
                // is the chunk's work.
                w.dims.forget();
                if let (Some(p), Some(before)) = (pruning.as_mut(), before) {
                    p.pass = before;
                }
                let failure = if e.is_unwritable() { IngestError::Unwritable } else { IngestError::Failed };
                tracing::error!(error = %e, requests = jobs.len(), "ingest commit failed");
                for job in jobs {
                    let _ = job.reply.send(Err(failure.clone()));
                }
            }
        }
        last_work = Instant::now();
    }
    if let Some(p) = pruning {
        finish_pruning(p, false);
    }
}

/// Takes a pass unless one is running (then the new one is dropped, which
/// its receiver sees).
fn begin_pruning(pruning: &mut Option<Pruning>, mut p: Pruning) {
    if pruning.is_none() {
        p.started = Instant::now();
        *pruning = Some(p);
    }
}

/// Runs the pass's next chunk in a transaction of its own (the writer is
/// idle); ends the pass when it is done or failed.
fn prune_chunk(conn: &Connection, pruning: &mut Option<Pruning>, checkpointer: &Checkpointer) {
    let Some(p) = pruning.as_mut() else { return };
    let result = p.pass.step_within(conn, Some(IDLE_PRUNE_BUDGET));
    after_chunk(pruning, result);
    keep_wal_small(conn, checkpointer, 0, true);
}

/// After a committed (or failed) chunk: notes its time; ends the pass when
/// it is done or failed.
fn after_chunk(pruning: &mut Option<Pruning>, result: Result<usize, StorageError>) {
    let Some(p) = pruning.as_mut() else { return };
    p.last_chunk = Instant::now();
    if p.last_progress.elapsed() >= PROGRESS_EVERY {
        p.last_progress = p.last_chunk;
        let seconds = p.started.elapsed().as_secs_f64();
        tracing::debug!(messages = p.pass.deleted(), chunks = p.pass.chunks(), seconds, "retention progress");
    }
    match result {
        Ok(_) if !p.pass.is_done() => {}
        Ok(_) => finish_pruning(pruning.take().expect("a pass in hand"), true),
        Err(e) => {
            tracing::warn!(error = %e, "retention chunk failed; the next pass goes on from here");
            finish_pruning(pruning.take().expect("a pass in hand"), false);
        }
    }
}

fn finish_pruning(p: Pruning, finished: bool) {
    let report = RetentionReport {
        deleted: p.pass.deleted(),
        chunks: p.pass.chunks(),
        finished,
        elapsed: p.started.elapsed(),
    };
    let seconds = report.elapsed.as_secs_f64();
    if report.deleted > 0 || !finished {
        tracing::info!(
            messages = report.deleted,
            chunks = report.chunks,
            finished,
            seconds,
            "message retention pass"
        );
    } else {
        tracing::debug!(chunks = report.chunks, seconds, "message retention pass");
    }
    let _ = p.done.send(report);
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

/// Stores the group's jobs in one transaction; then, with a pass given, runs
/// its next chunk (budget [`BUSY_PRUNE_BUDGET`]) in the same transaction
/// under a savepoint, so that a failing chunk is undone alone and the group
/// still commits. Returns each job's outcomes and the chunk's result; on an
/// error nothing is committed (the caller restores the pass).
type GroupResult = (Vec<Vec<StoreOutcome>>, Option<Result<usize, StorageError>>);
fn commit_group(
    conn: &mut Connection,
    w: &mut Writer,
    jobs: &[Job],
    same_content: SameContent,
    pass: Option<&mut RetentionPass>,
) -> Result<GroupResult, StorageError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_millis();
    let mut per_job = Vec::with_capacity(jobs.len());
    for job in jobs {
        per_job.push(messages::store_batch(&tx, &mut w.ids, &mut w.dims, now, &job.items, same_content)?);
    }
    let chunk = pass.map(|pass| pass.step_under_savepoint(&mut tx, Some(BUSY_PRUNE_BUDGET)));
    tx.commit()?;
    Ok((per_job, chunk))
}

/// After a group: hands the WAL to the checkpointer once it is large, and
/// finishes the checkpoint here once it is larger (see the module comment).
/// `pruning`: a retention pass is in hand, so the WAL holds its scattered
/// pages.
fn keep_wal_small(conn: &Connection, checkpointer: &Checkpointer, group_items: usize, pruning: bool) {
    let pages = WAL_PAGES.get();
    let now_pages = if pruning { PRUNING_CHECKPOINT_NOW_PAGES } else { CHECKPOINT_NOW_PAGES };
    if pages >= now_pages {
        // Passive: if the checkpointer is copying, this returns at once.
        WAL_PAGES.set(0);
        checkpoint(conn);
    } else if pages >= CHECKPOINT_SOON_PAGES && (group_items >= LARGE_GROUP_ITEMS || pruning) {
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
