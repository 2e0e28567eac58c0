//! Reads whose cost grows with the stored data — message counts by status
//! and failures grouped by cause — shared by `/metrics`, `/send/stats`,
//! `/send/failures` and the attention strip (one per process, in
//! `AppState`).
//!
//! A result is computed again on every request while computing it is cheap,
//! so a small database always answers exactly. Once a computation took
//! [`SLOW`] or more (measured at 10 million messages: the counts take ~1 s,
//! scanning the status index), its result is reused for up to
//! [`REUSE_FACTOR`] times its cost (at most [`MAX_AGE`]): the dashboard's
//! figures then lag by seconds, and those scans take at most ~1/20 of a core
//! however often the pages poll. One computation at a time: concurrent
//! requests wait for it instead of starting their own.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::storage::messages::{FailureGroup, MessageStatus};

/// A computation at least this long makes its result reusable.
pub const SLOW: Duration = Duration::from_millis(20);
/// A slow result is reused for up to this many times its cost …
pub const REUSE_FACTOR: u32 = 20;
/// … and never longer than this.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// Failure groups kept per status (the most any page asks for).
pub const FAILURE_GROUPS_MAX: usize = 100;

/// The process's shared slow reads.
#[derive(Default)]
pub struct SlowReads {
    /// `storage::messages::counts_by_status`.
    pub counts: Reused<Vec<(MessageStatus, i64)>>,
    /// `storage::messages::failure_groups` for `failed`, [`FAILURE_GROUPS_MAX`] groups.
    pub failed_groups: Reused<Vec<FailureGroup>>,
    /// The same for `rejected`.
    pub rejected_groups: Reused<Vec<FailureGroup>>,
}

impl SlowReads {
    /// The failure groups slot of `status` (failed or rejected; any other
    /// status shares the failed slot's shape but has no groups, so callers
    /// ask only for those two).
    pub fn groups(&self, status: MessageStatus) -> &Reused<Vec<FailureGroup>> {
        if status == MessageStatus::Rejected { &self.rejected_groups } else { &self.failed_groups }
    }
}

/// One read's last result, reused while [`Reused::get`]'s rule allows.
pub struct Reused<T> {
    slot: Mutex<Option<Computed<T>>>,
}

impl<T> Default for Reused<T> {
    fn default() -> Self {
        Self { slot: Mutex::new(None) }
    }
}

struct Computed<T> {
    value: T,
    at: Instant,
    cost: Duration,
}

impl<T> Computed<T> {
    fn reusable(&self, now: Instant) -> bool {
        self.cost >= SLOW && now.duration_since(self.at) < (self.cost * REUSE_FACTOR).min(MAX_AGE)
    }
}

impl<T: Clone> Reused<T> {
    /// The last result if it may be reused, else `compute()`'s (kept only
    /// when it succeeded).
    pub async fn get<E, F, Fut>(&self, compute: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        let started = Instant::now();
        if let Some(last) = slot.as_ref().filter(|c| c.reusable(started)) {
            return Ok(last.value.clone());
        }
        let value = compute().await?;
        *slot = Some(Computed { value: value.clone(), at: started, cost: started.elapsed() });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn count_calls(r: &Reused<u32>, calls: &mut u32, cost: Duration) -> u32 {
        r.get(|| async {
            *calls += 1;
            tokio::time::sleep(cost).await;
            Ok::<_, ()>(*calls)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_cheap_read_is_computed_every_time() {
        let r = Reused::default();
        let mut calls = 0;
        assert_eq!(count_calls(&r, &mut calls, Duration::ZERO).await, 1);
        assert_eq!(count_calls(&r, &mut calls, Duration::ZERO).await, 2);
    }

    #[tokio::test]
    async fn a_slow_read_is_reused_then_computed_again_once_old() {
        let r = Reused::default();
        let mut calls = 0;
        assert_eq!(count_calls(&r, &mut calls, SLOW).await, 1);
        assert_eq!(count_calls(&r, &mut calls, SLOW).await, 1, "reused");
        // Make the kept result older than its reuse window.
        r.slot.lock().await.as_mut().unwrap().at -= MAX_AGE;
        assert_eq!(count_calls(&r, &mut calls, Duration::ZERO).await, 2, "computed again");
        assert_eq!(count_calls(&r, &mut calls, Duration::ZERO).await, 3, "now cheap: not reused");
    }

    #[tokio::test]
    async fn a_slow_result_is_never_reused_beyond_the_maximum_age() {
        let r: Reused<u32> = Reused::default();
        *r.slot.lock().await = Some(Computed { value: 7, at: Instant::now() - MAX_AGE, cost: MAX_AGE });
        let mut calls = 0;
        assert_eq!(count_calls(&r, &mut calls, Duration::ZERO).await, 1);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let r: Reused<u32> = Reused::default();
        assert!(r.get(|| async { Err::<u32, _>("no") }).await.is_err());
        assert!(r.slot.lock().await.is_none());
    }
}
