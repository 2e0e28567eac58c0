//! One delivery worker thread: claim due messages, check them against the
//! eSight catalog, POST them, settle each outcome, record the batch. The loop
//! sleeps until a commit wakes it, the next message falls due, or a second
//! passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::Shared;
use super::backoff::{Permit, retry_delay};
use super::catalog::Verdict;
use super::client::CallError;
use crate::clock::now_millis;
use crate::domain::message::{delivery_message_id, rewrite_message_id};
use crate::esight::status::{Outcome, classify, error_code_for_status};
use crate::storage::delivery::{self as store, AttemptRecord, ClaimedMessage, Settlement};

/// Messages claimed at once by one worker at most.
const CLAIM_BATCH: usize = 32;
/// A claim holds about this much work: few messages when eSight is slow (so
/// no worker sits on a long queue while others idle), many when it is fast
/// (so claims and records stay few).
const CLAIM_WORK_MICROS: u64 = 200_000;

/// Messages claimed at once by one worker (sizes the lease).
pub const fn claim_batch() -> usize {
    CLAIM_BATCH
}
/// Longest sleep between looks at the queue.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs until `shared.stopping()`.
pub fn run(shared: Arc<Shared>, mut conn: Connection) {
    let mut seen = shared.wake_generation();
    while !shared.stopping() {
        match step(&shared, &mut conn) {
            Ok(Some(worked)) if worked => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "delivery step failed"),
        }
        // Paused, unconfigured or with the circuit open, due messages must not
        // shorten the sleep: only a wake-up (resume) or the poll ends it.
        let sleep = match shared.engine.as_ref().map(|e| e.breaker.remaining()) {
            _ if shared.is_paused() => IDLE_POLL,
            None => IDLE_POLL,
            Some(Some(wait)) => wait,
            Some(None) => shared.idle_sleep(&conn),
        }
        .min(IDLE_POLL);
        seen = shared.wait_for_work(seen, sleep);
    }
}

/// One round; `Some(true)` when it delivered something (look again at once).
fn step(shared: &Shared, conn: &mut Connection) -> Result<Option<bool>, crate::storage::StorageError> {
    if shared.is_paused() {
        return Ok(None);
    }
    let Some(engine) = shared.engine.as_ref() else { return Ok(None) };
    let permit = engine.breaker.permit();
    let limit = match permit {
        Permit::Deliver => {
            let per_message = shared.post_micros.load(std::sync::atomic::Ordering::Relaxed).max(1);
            usize::try_from(CLAIM_WORK_MICROS / per_message).unwrap_or(CLAIM_BATCH).clamp(1, CLAIM_BATCH)
        }
        Permit::Probe => 1,
        Permit::Wait(_) => return Ok(None),
    };
    let now = now_millis();
    let lease_ms = i64::try_from(shared.lease.as_millis()).unwrap_or(i64::MAX);
    let claimed = store::claim_due(conn, now, now.saturating_add(lease_ms), limit)?;
    if claimed.is_empty() {
        if permit == Permit::Probe {
            // Nothing to probe with: let the next worker try when work arrives.
            engine.breaker.record_success();
        }
        return Ok(Some(false));
    }
    let mut records = Vec::with_capacity(claimed.len());
    let mut reopen_at: Option<i64> = None;
    for msg in &claimed {
        if shared.stopping() || reopen_at.is_some() {
            let at = reopen_at.unwrap_or_else(now_millis);
            records.push(requeue(msg, at));
            continue;
        }
        let record = deliver(shared, msg);
        if engine.breaker.is_open() {
            reopen_at = Some(now_millis() + shared.breaker_wait_ms(&engine.breaker));
        }
        records.push(record);
    }
    store::record(conn, now_millis(), &records)?;
    for r in &records {
        let label = match r.settlement {
            Settlement::Delivered => "delivered",
            Settlement::Retry { .. } => "retry",
            Settlement::Failed { .. } => "failed",
            Settlement::Requeue { .. } => continue,
        };
        shared.metrics.delivery_attempts.inc(&vec![("outcome", label.to_string())]);
    }
    shared.settled(&records);
    Ok(Some(true))
}

fn requeue(msg: &ClaimedMessage, at: i64) -> AttemptRecord {
    AttemptRecord {
        message: msg.id,
        at,
        settlement: Settlement::Requeue { next_attempt_at: at },
        http_status: None,
        error: None,
        duration_ms: 0,
    }
}

/// One attempt for one message, settled.
fn deliver(shared: &Shared, msg: &ClaimedMessage) -> AttemptRecord {
    let engine = shared.engine.as_ref().expect("deliver runs only with an engine");
    let started_at = now_millis();
    let started = Instant::now();
    let attempt = u32::try_from(msg.attempts + 1).unwrap_or(u32::MAX);
    let finish = |settlement, http_status, error: Option<String>| AttemptRecord {
        message: msg.id,
        at: started_at,
        settlement,
        http_status,
        error,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    let retry_or_exhaust = |code: &str, retry_after: Option<Duration>| {
        let age_ms = started_at - msg.created_at;
        if attempt >= shared.max_attempts || age_ms >= shared.max_age_ms {
            return Settlement::Failed { error_code: "RetriesExhausted".into() };
        }
        let delay = retry_delay(attempt, shared.backoff_initial, shared.backoff_max, retry_after);
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        Settlement::Retry { next_attempt_at: now_millis().saturating_add(delay_ms), error_code: code.into() }
    };
    let outage = |e: &CallError| {
        let (code, hint) = match e {
            CallError::Transport(_) => ("ServiceUnavailable", None),
            CallError::Status { status, retry_after } => (error_code_for_status(*status), *retry_after),
            CallError::Invalid(_) => ("UntrackedError", None),
        };
        engine.breaker.record_failure(hint);
        (code, hint)
    };

    let site_code = format!("{}_{}", msg.local_market.to_uppercase(), msg.site_id);
    match engine.catalog.check(&engine.client, &msg.meter_id, &site_code, msg.created_at) {
        Ok(Verdict::Known) => {}
        Ok(Verdict::RecheckIn(wait)) => {
            // Not an attempt: decide once a catalog newer than the message is in.
            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX).max(1);
            return requeue(msg, now_millis().saturating_add(wait_ms));
        }
        Ok(Verdict::UnknownMeter) => {
            let why = format!("meter {} is not in eSight's catalog", msg.meter_id);
            return finish(Settlement::Failed { error_code: "NoMeterId".into() }, None, Some(why));
        }
        Ok(Verdict::UnknownSite) => {
            let why = format!("site {site_code} is not in eSight's catalog");
            return finish(Settlement::Failed { error_code: "NoSiteId".into() }, None, Some(why));
        }
        Err(e) => {
            let (code, hint) = outage(&e);
            let status = match &e {
                CallError::Status { status, .. } => Some(*status),
                _ => None,
            };
            let why = format!("catalog: {e}");
            return finish(retry_or_exhaust(code, hint), status, Some(why));
        }
    }

    let id = msg.id.to_string();
    let body = match rewrite_message_id(&msg.body, &delivery_message_id(&msg.message_id, &id)) {
        Ok(b) => b,
        Err(e) => {
            return finish(
                Settlement::Failed { error_code: "InvalidJson".into() },
                None,
                Some(e.to_string()),
            );
        }
    };
    let posted = Instant::now();
    let mut result = engine.client.post_consumption(&body, &id);
    shared.note_post_duration(posted.elapsed());
    if matches!(result, Err(CallError::Status { status: 401, .. })) {
        // One immediate resend that does not count as an attempt.
        result = engine.client.post_consumption(&body, &id);
    }
    match result {
        Ok(status) => {
            engine.breaker.record_success();
            finish(Settlement::Delivered, Some(status), None)
        }
        Err(CallError::Status { status, retry_after }) => match classify(status) {
            Outcome::Delivered => unreachable!("2xx is Ok"),
            Outcome::Retry => {
                let (code, hint) = outage(&CallError::Status { status, retry_after });
                let why = format!("eSight answered {status}");
                finish(retry_or_exhaust(code, hint.or(retry_after)), Some(status), Some(why))
            }
            Outcome::Fail(code) => {
                engine.breaker.record_success();
                let why = format!("eSight answered {status}");
                finish(Settlement::Failed { error_code: code.into() }, Some(status), Some(why))
            }
        },
        Err(e) => {
            let (code, hint) = outage(&e);
            finish(retry_or_exhaust(code, hint), None, Some(e.to_string()))
        }
    }
}
