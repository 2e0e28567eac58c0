//! The housekeeping thread: keeps in-memory state in step with the database
//! and the disk, and prunes what has expired. Every 500 ms it reloads the
//! identity directory if the database changed (so CLI edits reach a running
//! server within a second); every second it re-reads free disk space (the
//! ingest floor) and the database's size (`storage.max_db_bytes`) and
//! checkpoints the WAL passively; every 5 s it refreshes the open-message count and writes
//! API-key last-use times; every 10 minutes it purges expired sessions,
//! applies audit retention and hands a message retention pass to the ingest
//! writer (which deletes in chunks inside its commit groups, or between them when idle). Every tick it also writes the
//! summaries of closed `access_denied` windows (`audit::denials`), and at
//! stop the summaries of every open one, after the last request was served.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::app::AppState;
use crate::clock::now_millis;
use crate::storage::ingest::RetentionReport;
use crate::storage::retention::{DEFAULT_CHUNK_ROWS, RetentionPass};
use crate::storage::{StorageError, audit, identity, messages};

const TICK: Duration = Duration::from_millis(500);
const DAY_MS: i64 = 86_400_000;

/// Starts the thread; it stops when `state.stopping` is set.
pub fn start(state: Arc<AppState>, conn: Connection) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("housekeeping".into()).spawn(move || run(&state, conn))
}

fn run(state: &AppState, mut conn: Connection) {
    let mut last_second = Instant::now();
    let mut last_five = Instant::now();
    let mut last_prune: Option<Instant> = None;
    let mut message_retention: Option<Receiver<RetentionReport>> = None;
    while !state.stopping.load(Ordering::Acquire) {
        if let Err(e) = state.directory.refresh(&conn) {
            tracing::warn!(error = %e, "identity reload failed");
        }
        write_denial_summaries(&mut conn, state.denials.take_due(Instant::now()));
        if last_second.elapsed() >= Duration::from_secs(1) {
            last_second = Instant::now();
            update_disk_floor(state);
            match state.storage.db_used_bytes(&conn) {
                Ok(used) => update_db_cap(state, used),
                Err(e) => tracing::warn!(error = %e, "database size cannot be read"),
            }
            // The ingest writer does not checkpoint; a passive checkpoint
            // here copies committed pages without blocking writers.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
        if last_five.elapsed() >= Duration::from_secs(5) {
            last_five = Instant::now();
            if let Err(e) = flush(state, &mut conn) {
                tracing::warn!(error = %e, "housekeeping flush failed");
            }
            match state.guard.reload_keys_if_changed(state.storage.data_dir()) {
                Ok(true) => tracing::info!("signing keys reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "signing keys could not be reloaded"),
            }
        }
        if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(600)) {
            last_prune = Some(Instant::now());
            if let Err(e) = prune(state, &mut conn) {
                tracing::warn!(error = %e, "retention pass failed");
            }
            start_message_retention(state, &mut message_retention);
        }
        std::thread::park_timeout(TICK);
    }
    let _ = flush(state, &mut conn);
    write_denial_summaries(&mut conn, state.denials.take_all());
}

/// Appends the summary events of closed `access_denied` windows.
fn write_denial_summaries(conn: &mut Connection, summaries: Vec<crate::audit::Event>) {
    for event in summaries {
        if let Err(e) = crate::audit::record_blocking(conn, event) {
            tracing::error!(error = %e, "cannot write an access_denied summary to the audit log");
        }
    }
}

/// Re-reads free disk space into the flag ingest checks.
pub fn update_disk_floor(state: &AppState) {
    let low = state.storage.free_disk_bytes().is_ok_and(|free| free < state.config.storage.min_free_bytes);
    state.disk_low.store(low, Ordering::Release);
}

/// Records the database's size and whether it is over `storage.max_db_bytes`
/// (0: no cap), the flag ingest checks.
pub fn update_db_cap(state: &AppState, used_bytes: u64) {
    state.db_used_bytes.store(used_bytes, Ordering::Release);
    let cap = state.config.storage.max_db_bytes;
    let full = cap > 0 && used_bytes >= cap;
    if full != state.db_full.swap(full, Ordering::AcqRel) {
        if full {
            tracing::warn!(
                used_bytes,
                max_db_bytes = cap,
                "database over storage.max_db_bytes: ingest refused"
            );
        } else {
            tracing::info!(used_bytes, max_db_bytes = cap, "database under storage.max_db_bytes again");
        }
    }
}

fn flush(state: &AppState, conn: &mut Connection) -> Result<(), StorageError> {
    let open = messages::count_open(conn)?;
    state.open_messages.store(open, Ordering::Release);
    let uses = state.directory.take_key_uses();
    if !uses.is_empty() {
        identity::touch_api_keys(conn, &uses)?;
    }
    Ok(())
}

fn prune(state: &AppState, conn: &mut Connection) -> Result<(), StorageError> {
    let now = now_millis();
    let sessions = identity::purge_expired_sessions(conn, now - 120_000)?;
    let audit_days = i64::from(state.config.audit.retention_days);
    let events = audit::prune_before(conn, now - audit_days * DAY_MS)?;
    if sessions + events > 0 {
        tracing::info!(sessions, audit_events = events, "retention pass");
    }
    Ok(())
}

/// Hands a message retention pass to the ingest writer, which deletes in
/// chunks inside its commit groups or between them (so retention never holds
/// the write lock against ingest), unless the previous pass is still running.
fn start_message_retention(state: &AppState, running: &mut Option<Receiver<RetentionReport>>) {
    if running.as_ref().is_some_and(|r| matches!(r.try_recv(), Err(TryRecvError::Empty))) {
        return;
    }
    let now = now_millis();
    let r = &state.config.retention;
    let pass = RetentionPass::new(
        now - i64::from(r.delivered_days) * DAY_MS,
        now - i64::from(r.failed_days) * DAY_MS,
        DEFAULT_CHUNK_ROWS,
    );
    *running = match state.ingest.start_retention(pass) {
        Ok(report) => Some(report),
        Err(e) => {
            tracing::warn!(error = %e, "message retention not started; next try in 10 minutes");
            None
        }
    };
}
