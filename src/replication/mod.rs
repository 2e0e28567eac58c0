//! Continuous replication by Litestream, a separate process that streams
//! the database's WAL to a replica (directory, SFTP, S3-compatible, …).
//! We do not replicate anything ourselves; we talk to Litestream's control
//! socket to learn what the replica holds and, with
//! `replication.acknowledge = "replicated"`, to answer only once a change
//! is there (`barrier`). `status` is what the operator sees; `replica_url`
//! keeps secrets out of it.

mod barrier;
mod control;
mod litestream_process;
mod replica_url;
mod status;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

pub use barrier::{Barrier, Outcome, Unconfirmed, Waiter};
pub use control::{ControlError, ControlSocket, SyncAnswer};
pub use litestream_process::{LitestreamProcess, LitestreamSetup, find_binary as find_litestream};
pub use replica_url::without_secrets;
pub use status::{Snapshot, StatusCell};

use crate::config::{Acknowledge, ReplicationConfig, ReplicationMode};

/// The database path as Litestream names it: absolute, symlinks kept
/// (Litestream makes its configured path absolute the same way).
pub fn database_path(data_dir: &Path) -> PathBuf {
    let path = data_dir.join(crate::storage::DB_FILE);
    std::path::absolute(&path).unwrap_or(path)
}

/// For a change made outside the server (a CLI command): with
/// `acknowledge = "replicated"`, waits until Litestream confirms the
/// replica holds everything committed so far, at most `replication.timeout`;
/// `Ok` at once otherwise. The change stays in the local database either
/// way (Litestream replicates it once it runs again).
pub fn confirm_change(config: &ReplicationConfig, data_dir: &Path) -> Result<(), Unconfirmed> {
    let (ReplicationMode::Litestream, Acknowledge::Replicated, Some(socket)) =
        (config.mode, config.acknowledge, &config.socket)
    else {
        return Ok(());
    };
    let timeout = config.timeout.get();
    ControlSocket::new(socket, &database_path(data_dir))
        .sync_and_wait(timeout)
        .map(|_| ())
        .map_err(|e| Unconfirmed { reason: e.0, timeout_secs: barrier::whole_secs(timeout) })
}

/// Replication as configured: off, or Litestream with its barrier thread.
pub struct Replication {
    barrier: Option<Barrier>,
    acknowledge: Acknowledge,
    replica: Option<String>,
    status: StatusCell,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The status as reported (`/readyz`, `/metrics`, admin page).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `local` or `replicated`.
    pub acknowledge: &'static str,
    /// The replica's address without secrets, when configured.
    pub replica: Option<String>,
    /// The replication thread's latest reading.
    #[serde(flatten)]
    pub status: Snapshot,
}

impl Replication {
    /// No replication (`mode = "off"`).
    pub fn off() -> Self {
        Self {
            barrier: None,
            acknowledge: Acknowledge::Local,
            replica: None,
            status: StatusCell::default(),
            thread: Mutex::new(None),
        }
    }

    /// Starts the replication thread when `config.mode` is `litestream`.
    pub fn start(config: &ReplicationConfig, data_dir: &Path) -> std::io::Result<Self> {
        let (ReplicationMode::Litestream, Some(socket)) = (config.mode, &config.socket) else {
            return Ok(Self::off());
        };
        let control = ControlSocket::new(socket, &database_path(data_dir));
        let status = StatusCell::default();
        let (barrier, thread) = Barrier::start(control, config.timeout.get(), status.clone())?;
        tracing::info!(
            socket = %socket.display(),
            acknowledge = config.acknowledge.as_str(),
            replica = config.replica.as_deref().map(without_secrets).as_deref().unwrap_or("(not configured)"),
            "replication by Litestream"
        );
        Ok(Self {
            barrier: Some(barrier),
            acknowledge: config.acknowledge,
            replica: config.replica.as_deref().map(without_secrets),
            status,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether Litestream replication is configured.
    pub fn is_on(&self) -> bool {
        self.barrier.is_some()
    }

    /// The barrier answers must wait for (`acknowledge = "replicated"`).
    pub fn acknowledging(&self) -> Option<&Barrier> {
        self.barrier.as_ref().filter(|_| self.acknowledge == Acknowledge::Replicated)
    }

    /// The barrier, in either acknowledge mode (for the lag).
    pub fn barrier(&self) -> Option<&Barrier> {
        self.barrier.as_ref()
    }

    /// Whether readiness holds: replication off, or the last sync was
    /// confirmed; with `acknowledge = "local"` a failing replica is shown
    /// but does not fail readiness (ingest goes on, unprotected).
    pub fn ready(&self, report: &Report) -> bool {
        report.status.confirming || self.acknowledge == Acknowledge::Local
    }

    /// The status, `None` when replication is off.
    pub fn report(&self) -> Option<Report> {
        let barrier = self.barrier.as_ref()?;
        let last_commit = barrier.shared().last_commit_ms.load(std::sync::atomic::Ordering::Acquire);
        Some(Report {
            acknowledge: self.acknowledge.as_str(),
            replica: self.replica.clone(),
            status: self.status.snapshot(last_commit),
        })
    }

    /// Stops the thread after a last sync for the commits still waiting,
    /// waiting at most `grace`.
    pub fn stop(&self, grace: Duration) {
        let Some(barrier) = &self.barrier else { return };
        barrier.stop();
        let deadline = std::time::Instant::now() + grace;
        while !barrier.is_stopped() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let thread = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(thread) = thread.filter(|_| barrier.is_stopped()) {
            let _ = thread.join();
        }
    }
}
