//! What `/readyz`, `/metrics` and the admin page's system view say about
//! replication: Litestream's local and replicated transaction ids, how far
//! the replica is behind, when it last confirmed, the last error and how
//! many syncs failed. Kept by the replication thread; read anywhere.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::clock::now_millis;

#[derive(Debug, Default)]
struct Inner {
    /// Unix ms up to which the replica is known to hold every commit (the
    /// start of the last confirmed sync).
    covered_ms: Option<i64>,
    /// Unix ms when that confirmation arrived.
    confirmed_ms: Option<i64>,
    local_txid: Option<u64>,
    replicated_txid: Option<u64>,
    last_error: Option<String>,
    failures: u64,
    confirmations: u64,
}

/// The shared status, written by the replication thread.
#[derive(Debug, Clone, Default)]
pub struct StatusCell(Arc<Mutex<Inner>>);

impl StatusCell {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A sync that started at `covers_ms` was confirmed.
    pub(super) fn confirmed(&self, covers_ms: i64, local_txid: u64, replicated_txid: u64) {
        self.with(|s| {
            if s.last_error.take().is_some() {
                tracing::info!("replication: the replica confirms again");
            }
            // Two syncs may be in flight and end in either order: the
            // status only moves forward.
            s.covered_ms = s.covered_ms.max(Some(covers_ms));
            s.confirmed_ms = Some(now_millis());
            s.local_txid = s.local_txid.max(Some(local_txid));
            s.replicated_txid = s.replicated_txid.max(Some(replicated_txid));
            s.confirmations += 1;
        });
    }

    /// A sync failed; true when it is the first failure after a success
    /// (worth a log line).
    pub(super) fn failed(&self, error: &str) -> bool {
        self.with(|s| {
            s.failures += 1;
            s.last_error.replace(error.to_string()).is_none()
        })
    }

    /// The status now; `last_commit_ms` is the last local commit.
    pub fn snapshot(&self, last_commit_ms: i64) -> Snapshot {
        let now = now_millis();
        self.with(|s| {
            let behind_ms = match s.covered_ms {
                Some(covered) if last_commit_ms > covered => now - covered,
                Some(_) => 0,
                // Nothing confirmed yet: behind since the last commit at
                // least (0 before any).
                None if last_commit_ms > 0 => now - last_commit_ms,
                None => 0,
            };
            Snapshot {
                confirming: s.last_error.is_none() && s.confirmed_ms.is_some(),
                local_txid: s.local_txid,
                replicated_txid: s.replicated_txid,
                seconds_behind: (behind_ms.max(0) as f64) / 1000.0,
                last_confirmed_unix_ms: s.confirmed_ms,
                last_error: s.last_error.clone(),
                failures: s.failures,
                confirmations: s.confirmations,
            }
        })
    }
}

/// One reading of the status.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The last sync was confirmed (false before the first one).
    pub confirming: bool,
    /// Litestream's local transaction id at the last confirmation.
    pub local_txid: Option<u64>,
    /// The transaction id the replica held at the last confirmation.
    pub replicated_txid: Option<u64>,
    /// Since when the replica may miss a local commit (0: it holds all).
    pub seconds_behind: f64,
    /// When the replica last confirmed (unix ms).
    pub last_confirmed_unix_ms: Option<i64>,
    /// The last control-socket error, while syncs fail.
    pub last_error: Option<String>,
    /// Syncs that failed since start.
    pub failures: u64,
    /// Syncs confirmed since start.
    pub confirmations: u64,
}

#[cfg(test)]
mod tests {
    use super::StatusCell;
    use crate::clock::now_millis;

    #[test]
    fn lag_counts_from_the_last_confirmed_moment_only_while_commits_are_newer() {
        let cell = StatusCell::default();
        let s = cell.snapshot(0);
        assert_eq!((s.seconds_behind, s.confirming), (0.0, false), "nothing committed, nothing behind");
        let now = now_millis();
        assert!(cell.snapshot(now - 2000).seconds_behind >= 2.0, "a commit and no confirmation yet");
        cell.confirmed(now - 5000, 7, 7);
        assert_eq!(cell.snapshot(now - 6000).seconds_behind, 0.0, "every commit is covered");
        let s = cell.snapshot(now - 1000);
        assert!(s.seconds_behind >= 5.0 && s.confirming, "a commit after the covered moment: {s:?}");
        assert!(cell.failed("socket gone"));
        assert!(!cell.failed("socket gone"), "only the first failure in a row is worth a log line");
        let s = cell.snapshot(now - 6000);
        assert_eq!((s.confirming, s.failures, s.last_error.as_deref()), (false, 2, Some("socket gone")));
        cell.confirmed(now, 8, 8);
        assert!(cell.snapshot(now).last_error.is_none(), "a confirmation clears the error");
    }

    #[test]
    fn confirmations_ending_out_of_order_never_move_the_status_back() {
        let cell = StatusCell::default();
        let now = now_millis();
        cell.confirmed(now - 1000, 9, 9);
        cell.confirmed(now - 3000, 7, 7);
        let s = cell.snapshot(now - 2000);
        assert_eq!((s.local_txid, s.replicated_txid), (Some(9), Some(9)), "{s:?}");
        assert_eq!(s.seconds_behind, 0.0, "the later sync covered the commit: {s:?}");
    }
}
