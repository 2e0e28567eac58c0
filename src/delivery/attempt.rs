//! One delivery attempt, before and after its post: [`prepare`] checks a
//! claimed message against eSight's catalog and builds the body eSight gets
//! (or settles it at once: unknown meter or site, unusable JSON, catalog
//! unreachable); [`settle`] turns a post's answer into the message's
//! settlement, feeds the circuit breaker, and tells the limiter what the
//! answer says about eSight's load.

use std::time::Duration;

use bytes::Bytes;

use super::backoff::retry_delay;
use super::catalog::Verdict;
use super::client::CallError;
use super::limiter::{RoundId, Sample};
use super::poster::Job;
use super::{Engine, Shared};
use crate::clock::now_millis;
use crate::domain::message::{delivery_message_id, rewrite_message_id};
use crate::esight::status::{Outcome, classify, error_code_for_status};
use crate::storage::delivery::{AttemptRecord, ClaimedMessage, Settlement};

/// What a claimed message needs to be settled once its post is answered.
#[derive(Debug, Clone, Copy)]
pub struct Outstanding {
    /// The message.
    pub id: i64,
    /// Attempts before this one.
    pub attempts: i64,
    /// Start of its retry cycle (Unix ms), for `delivery.max_age`.
    pub created_at: i64,
    /// When the attempt started (Unix ms).
    pub started_at: i64,
    /// The limiter's round it was sent in.
    pub round: RoundId,
}

/// A claimed message after the catalog check.
#[derive(Debug)]
pub enum Prepared {
    /// To be posted.
    Post(Job, Outstanding),
    /// Settled without a post.
    Settled(AttemptRecord),
}

/// Puts a claimed message back, due at `at`, without counting an attempt.
pub fn requeue(id: i64, at: i64) -> AttemptRecord {
    AttemptRecord {
        message: id,
        at,
        settlement: Settlement::Requeue { next_attempt_at: at },
        http_status: None,
        error: None,
        duration_ms: 0,
    }
}

fn record(
    o: &Outstanding,
    settlement: Settlement,
    http_status: Option<u16>,
    error: Option<String>,
    took: Duration,
) -> AttemptRecord {
    AttemptRecord {
        message: o.id,
        at: o.started_at,
        settlement,
        http_status,
        error,
        duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
    }
}

/// Retry later, or give up when attempts or age are spent.
fn retry_or_exhaust(
    shared: &Shared,
    o: &Outstanding,
    code: &str,
    retry_after: Option<Duration>,
) -> Settlement {
    let attempt = u32::try_from(o.attempts + 1).unwrap_or(u32::MAX);
    if attempt >= shared.max_attempts || o.started_at - o.created_at >= shared.max_age_ms {
        return Settlement::Failed { error_code: "RetriesExhausted".into() };
    }
    let delay = retry_delay(attempt, shared.backoff_initial, shared.backoff_max, retry_after);
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    Settlement::Retry { next_attempt_at: now_millis().saturating_add(delay_ms), error_code: code.into() }
}

/// The catalog check and the body, for one claimed message.
pub fn prepare(shared: &Shared, engine: &Engine, msg: ClaimedMessage) -> Prepared {
    let o = Outstanding {
        id: msg.id,
        attempts: msg.attempts,
        created_at: msg.created_at,
        started_at: now_millis(),
        round: RoundId::UNSENT,
    };
    let started = std::time::Instant::now();
    let site_code = format!("{}_{}", msg.local_market.to_uppercase(), msg.site_id);
    match engine.catalog.check(&engine.client, &msg.meter_id, &site_code, msg.created_at) {
        Ok(Verdict::Known) => {}
        Ok(Verdict::RecheckIn(wait)) => {
            // Not an attempt: decide once a catalog newer than the message is in.
            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX).max(1);
            return Prepared::Settled(requeue(msg.id, now_millis().saturating_add(wait_ms)));
        }
        Ok(Verdict::UnknownMeter) => {
            let why = format!("meter {} is not in eSight's catalog", msg.meter_id);
            let failed = Settlement::Failed { error_code: "NoMeterId".into() };
            return Prepared::Settled(record(&o, failed, None, Some(why), started.elapsed()));
        }
        Ok(Verdict::UnknownSite) => {
            let why = format!("site {site_code} is not in eSight's catalog");
            let failed = Settlement::Failed { error_code: "NoSiteId".into() };
            return Prepared::Settled(record(&o, failed, None, Some(why), started.elapsed()));
        }
        Err(e) => {
            let (code, hint, status) = match &e {
                CallError::Transport(_) => ("ServiceUnavailable", None, None),
                CallError::Status { status, retry_after } => {
                    (error_code_for_status(*status), *retry_after, Some(*status))
                }
                CallError::Invalid(_) => ("UntrackedError", None, None),
            };
            engine.breaker.record_failure(hint);
            shared.reachability.failed(now_millis(), format!("catalog: {e}"));
            let settlement = retry_or_exhaust(shared, &o, code, hint);
            return Prepared::Settled(record(
                &o,
                settlement,
                status,
                Some(format!("catalog: {e}")),
                started.elapsed(),
            ));
        }
    }
    let id = msg.id.to_string();
    match rewrite_message_id(&msg.body, &delivery_message_id(&msg.message_id, &id)) {
        Ok(body) => Prepared::Post(Job { id: msg.id, body: Bytes::from(body) }, o),
        Err(e) => {
            let failed = Settlement::Failed { error_code: "InvalidJson".into() };
            Prepared::Settled(record(&o, failed, None, Some(e.to_string()), started.elapsed()))
        }
    }
}

/// How a post's answer settles its message.
#[derive(Debug)]
pub struct Settled {
    /// The record to store.
    pub record: AttemptRecord,
    /// What the answer says about eSight's load.
    pub sample: Sample,
    /// This answer closed the circuit breaker: the outage is over.
    pub outage_over: bool,
}

/// Settles a post answered (or not) after `rtt`.
///
/// For the limiter, `408`, `429`, `503`, `504` and transport errors
/// (refused, reset, timed out) are overload; any other answer is a latency
/// sample. For the breaker, transport errors and `408`/`5xx` are failures; a
/// `429` is not (eSight is up, only busy: the limiter and `Retry-After`
/// handle it) and closes an open circuit like any other answer.
pub fn settle(
    shared: &Shared,
    engine: &Engine,
    o: &Outstanding,
    rtt: Duration,
    result: Result<u16, CallError>,
) -> Settled {
    let answered = Sample::Answered { rtt };
    let now = now_millis();
    match &result {
        Ok(_) | Err(CallError::Status { status: 429, .. }) => shared.reachability.answered(now),
        Err(CallError::Status { status, .. }) if classify(*status) == Outcome::Retry => {
            shared.reachability.failed(now, format!("eSight answered {status}"))
        }
        Err(CallError::Status { .. }) => shared.reachability.answered(now),
        Err(e) => shared.reachability.failed(now, e.to_string()),
    }
    match result {
        Ok(status) => Settled {
            outage_over: engine.breaker.record_success(),
            record: record(o, Settlement::Delivered, Some(status), None, rtt),
            sample: answered,
        },
        Err(CallError::Status { status, retry_after }) => {
            let why = Some(format!("eSight answered {status}"));
            match classify(status) {
                Outcome::Retry => {
                    let overloaded = matches!(status, 408 | 429 | 503 | 504);
                    let outage_over = if status == 429 {
                        engine.breaker.record_success()
                    } else {
                        engine.breaker.record_failure(retry_after);
                        false
                    };
                    let settlement = retry_or_exhaust(shared, o, error_code_for_status(status), retry_after);
                    Settled {
                        record: record(o, settlement, Some(status), why, rtt),
                        sample: if overloaded { Sample::Overloaded { retry_after } } else { answered },
                        outage_over,
                    }
                }
                Outcome::Fail(code) => Settled {
                    outage_over: engine.breaker.record_success(),
                    record: record(o, Settlement::Failed { error_code: code.into() }, Some(status), why, rtt),
                    sample: answered,
                },
                Outcome::Delivered => Settled {
                    // A 2xx is `Ok`; kept total rather than unreachable.
                    outage_over: engine.breaker.record_success(),
                    record: record(o, Settlement::Delivered, Some(status), None, rtt),
                    sample: answered,
                },
            }
        }
        Err(e) => {
            engine.breaker.record_failure(None);
            let settlement = retry_or_exhaust(shared, o, "ServiceUnavailable", None);
            Settled {
                record: record(o, settlement, None, Some(e.to_string()), rtt),
                sample: Sample::Overloaded { retry_after: None },
                outage_over: false,
            }
        }
    }
}
