//! The replication barrier: callers whose commit is on the local disk wait
//! here until Litestream confirms it on the replica. [`SYNCS_IN_FLIGHT`]
//! threads (`replication`, `replication-2`) each send one `POST /sync`
//! (wait) at a time; every waiter registered before a request was sent is
//! covered by it (Litestream syncs the WAL as it is when the request
//! arrives, or later), so one confirmation releases every commit before it
//! — the writer goes on committing groups while syncs are in flight, and
//! the next sync covers all of them. With two in flight, a commit that
//! lands just after a sync was sent need not wait for that sync to end
//! before its own starts: Litestream runs the second request's WAL-to-LTX
//! step while the first one's upload is under way (it serialises each step,
//! not the whole request), so a commit waits about one sync instead of one
//! and a half.
//!
//! A failed sync is retried (every 200 ms) until a waiter has waited
//! `replication.timeout`; that waiter is then refused (`Unconfirmed`, which
//! the HTTP layer answers with `503` and `Retry-After`). When nothing waits,
//! the thread probes once a second, so the status (and `/readyz`) knows the
//! replica's state without traffic.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::control::{ControlError, ControlSocket, SyncAnswer};
use super::status::StatusCell;
use crate::clock::now_millis;

/// How long the thread waits for a waiter before it probes the replica.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Sync requests outstanding at most (threads sending them). More than two
/// gains nothing: Litestream has two stages (WAL to LTX, LTX to replica),
/// each one request at a time.
pub const SYNCS_IN_FLIGHT: usize = 2;
/// Pause between a failed sync and the next attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A commit the replica did not confirm in time: refuse the answer that
/// would have acknowledged it (the data stays in the local database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the replica did not confirm the change within {timeout_secs} s: {reason}")]
pub struct Unconfirmed {
    /// Why (the last control-socket error).
    pub reason: String,
    /// `replication.timeout` in whole seconds (at least 1), also the
    /// suggested `Retry-After`.
    pub timeout_secs: u64,
}

/// What a waiter is told: `Ok` once the replica holds its commit.
pub type Outcome = Result<(), Unconfirmed>;

/// Called once with the outcome, on the replication thread (keep it short:
/// send on a channel).
pub type Waiter = Box<dyn FnOnce(Outcome) + Send>;

struct Pending {
    since: Instant,
    waiter: Waiter,
}

#[derive(Default)]
struct Queue {
    waiters: Vec<Pending>,
    stopping: bool,
}

pub(super) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    pub(super) status: StatusCell,
    /// Unix ms of the last local commit (`note_commit`).
    pub(super) last_commit_ms: AtomicI64,
    stopped: AtomicBool,
}

/// The barrier's handle: cheap to clone.
#[derive(Clone)]
pub struct Barrier {
    shared: Arc<Shared>,
    timeout: Duration,
}

impl Barrier {
    /// Starts the replication threads for `control`; the handle returned
    /// ends once all of them have.
    pub fn start(
        control: ControlSocket,
        timeout: Duration,
        status: StatusCell,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            status,
            last_commit_ms: AtomicI64::new(0),
            stopped: AtomicBool::new(false),
        });
        let mut helpers = Vec::with_capacity(SYNCS_IN_FLIGHT - 1);
        for n in 2..=SYNCS_IN_FLIGHT {
            let (shared, control) = (shared.clone(), control.clone());
            helpers.push(
                std::thread::Builder::new()
                    .name(format!("replication-{n}"))
                    .spawn(move || run(&shared, &control, timeout, Role::Helper))?,
            );
        }
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new().name("replication".into()).spawn(move || {
            run(&for_thread, &control, timeout, Role::Prober);
            for helper in helpers {
                let _ = helper.join();
            }
            for_thread.stopped.store(true, Ordering::Release);
        })?;
        Ok((Self { shared, timeout }, thread))
    }

    /// Records that a commit just reached the local disk (for the lag).
    pub fn note_commit(&self) {
        self.shared.last_commit_ms.store(now_millis(), Ordering::Release);
    }

    /// Calls `waiter` once everything committed before this call is on the
    /// replica, or with `Unconfirmed` after `replication.timeout`.
    pub fn after_replicated(&self, waiter: Waiter) {
        self.note_commit();
        let mut q = lock(&self.shared.queue);
        if q.stopping {
            drop(q);
            waiter(Err(Unconfirmed {
                reason: "the server is stopping".into(),
                timeout_secs: self.timeout_secs(),
            }));
            return;
        }
        q.waiters.push(Pending { since: Instant::now(), waiter });
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Resolves once everything committed before this call is on the replica.
    pub async fn replicated(&self) -> Outcome {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.after_replicated(Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }));
        rx.await.unwrap_or_else(|_| {
            Err(Unconfirmed {
                reason: "the replication thread stopped".into(),
                timeout_secs: self.timeout_secs(),
            })
        })
    }

    /// `replication.timeout` in whole seconds, at least 1.
    pub fn timeout_secs(&self) -> u64 {
        whole_secs(self.timeout)
    }

    /// Stops the thread after one last sync for the waiters in hand.
    pub fn stop(&self) {
        lock(&self.shared.queue).stopping = true;
        self.shared.wake.notify_all();
    }

    /// Whether the threads have ended.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// `d` in whole seconds, rounded up, at least 1 (what Litestream's control
/// socket and `Retry-After` take).
pub(super) fn whole_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a replication thread does when nobody waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Probes the replica once a second (the status knows its state without
    /// traffic).
    Prober,
    /// Sleeps until a waiter comes.
    Helper,
}

fn run(shared: &Shared, control: &ControlSocket, timeout: Duration, role: Role) {
    let mut batch: Vec<Pending> = Vec::new();
    loop {
        let stopping = {
            let mut q = lock(&shared.queue);
            if batch.is_empty() && q.waiters.is_empty() && !q.stopping {
                q = match role {
                    Role::Prober => {
                        shared.wake.wait_timeout(q, PROBE_INTERVAL).unwrap_or_else(|e| e.into_inner()).0
                    }
                    Role::Helper => shared.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                };
                if role == Role::Helper && q.waiters.is_empty() && !q.stopping {
                    continue;
                }
            }
            batch.append(&mut q.waiters);
            q.stopping
        };
        if stopping && batch.is_empty() {
            break;
        }
        // Everything committed before this instant is covered by this sync.
        let covers_ms = now_millis();
        let budget = batch.iter().map(|p| timeout.saturating_sub(p.since.elapsed())).min().unwrap_or(timeout);
        match control.sync_and_wait(budget.max(Duration::from_secs(1))) {
            Ok(answer) => confirmed(shared, &mut batch, covers_ms, &answer),
            Err(e) => {
                failed(shared, &mut batch, timeout, &e, stopping);
                if stopping {
                    break;
                }
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

fn confirmed(shared: &Shared, batch: &mut Vec<Pending>, covers_ms: i64, answer: &SyncAnswer) {
    shared.status.confirmed(covers_ms, answer.txid, answer.replicated_txid);
    for p in batch.drain(..) {
        (p.waiter)(Ok(()));
    }
}

fn failed(shared: &Shared, batch: &mut Vec<Pending>, timeout: Duration, e: &ControlError, stopping: bool) {
    if shared.status.failed(&e.0) {
        tracing::warn!(error = %e, "replication: the replica did not confirm");
    }
    let refusal = Unconfirmed { reason: e.0.clone(), timeout_secs: whole_secs(timeout) };
    let (expired, waiting): (Vec<_>, Vec<_>) =
        std::mem::take(batch).into_iter().partition(|p| stopping || p.since.elapsed() >= timeout);
    *batch = waiting;
    for p in expired {
        (p.waiter)(Err(refusal.clone()));
    }
}

#[cfg(test)]
mod tests;
