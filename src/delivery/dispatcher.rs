//! The dispatcher thread `delivery`: the only one that touches the database
//! for delivery. Each round it
//!
//! 1. takes the posts answered since the last round, settles them (breaker,
//!    limiter) and records them with their attempt rows in one transaction —
//!    under load many per transaction;
//! 2. when an answer closed the circuit breaker, makes the messages held
//!    back by the outage due now;
//! 3. claims as many due messages as the concurrency limit leaves room for
//!    (one probe while the circuit is open, none while paused, during a
//!    `Retry-After` hold or without `[esight]`), checks them against the
//!    catalog and hands them to the posting thread.
//!
//! It sleeps when a round did nothing, until a commit, an answer, a resume
//! or the next due time wakes it (at most a second). On stop it claims no
//! more, waits up to [`DRAIN_GRACE`] for the posts outstanding, records
//! them, and puts back (`pending`, no attempt counted) whatever is still
//! unanswered: nothing stays `delivering`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::attempt::{self, Outstanding, Prepared};
use super::backoff::Permit;
use super::poster::Poster;
use super::{Engine, Shared};
use crate::clock::now_millis;
use crate::storage::StorageError;
use crate::storage::delivery::{self as store, AttemptRecord, Settlement};

/// Most messages claimed in one round.
const CLAIM_MAX: usize = 256;
/// Longest sleep between looks at the queue.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Lingering between rounds: how long, from how many posts outstanding, and
/// how many answers already waiting make it unnecessary.
const LINGER: Duration = Duration::from_millis(1);
const LINGER_MIN_IN_FLIGHT: usize = 32;
const LINGER_ENOUGH: usize = 64;
/// How long a stopping dispatcher waits for outstanding posts.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The posts outstanding, by message id.
type InFlight = HashMap<i64, Outstanding>;

/// Runs until `shared.stopping()`, then drains.
pub fn run(shared: Arc<Shared>, mut conn: Connection, poster: Option<Poster>) {
    let mut in_flight = InFlight::new();
    let mut seen = shared.wake_generation();
    while !shared.stopping() {
        let worked = match round(&shared, &mut conn, poster.as_ref(), &mut in_flight) {
            Ok(worked) => worked,
            Err(e) => {
                tracing::warn!(error = %e, "delivery round failed");
                false
            }
        };
        if worked {
            linger(&shared, in_flight.len());
            continue;
        }
        seen = shared.wait_for_work(seen, sleep_for(&shared, &conn, in_flight.len()));
    }
    drain(&shared, &mut conn, poster, in_flight);
}

/// Under load, lets answers gather for a moment before the next round, so
/// that a round records many at once (one transaction, one claim) instead of
/// one or two each: measured at 100 ms and ~1,500 posts in flight, the
/// dispatcher's CPU per message fell from 34 µs to (see BENCHMARKS.md).
/// Costs at most [`LINGER`] of delivery latency; never with few posts out.
fn linger(shared: &Shared, in_flight: usize) {
    if in_flight >= LINGER_MIN_IN_FLIGHT && shared.answers_waiting() < LINGER_ENOUGH {
        std::thread::sleep(LINGER);
    }
}

/// How long to sleep after a round that did nothing.
fn sleep_for(shared: &Shared, conn: &Connection, in_flight: usize) -> Duration {
    let Some(engine) = shared.engine.as_ref() else { return IDLE_POLL };
    if shared.is_paused() || in_flight > 0 {
        // Paused: only a resume ends the sleep. Posts outstanding: their
        // answers wake the dispatcher.
        return IDLE_POLL;
    }
    if let Some(wait) = engine.breaker.remaining() {
        return wait.min(IDLE_POLL);
    }
    let now = Instant::now();
    if let Some(until) = shared.limiter.held_until(now) {
        return (until - now).min(IDLE_POLL);
    }
    shared.idle_sleep(conn).min(IDLE_POLL)
}

/// One round; true when it settled or claimed anything.
fn round(
    shared: &Shared,
    conn: &mut Connection,
    poster: Option<&Poster>,
    in_flight: &mut InFlight,
) -> Result<bool, StorageError> {
    let Some(engine) = shared.engine.as_ref() else { return Ok(false) };
    let (mut records, outage_over) = settle_answers(shared, engine, in_flight);
    if outage_over {
        let made_due = store::due_after_outage(conn, now_millis())?;
        tracing::info!(made_due, "eSight answers again: messages held back by the outage are due now");
    }
    let claimed = match poster {
        Some(poster) if !shared.is_paused() => claim(shared, engine, conn, poster, in_flight, &mut records)?,
        _ => 0,
    };
    let worked = !records.is_empty() || claimed > 0;
    if !records.is_empty() {
        store::record(conn, now_millis(), &records)?;
        shared.count(&records);
    }
    Ok(worked)
}

/// Settles every post answered since the last round.
fn settle_answers(shared: &Shared, engine: &Engine, in_flight: &mut InFlight) -> (Vec<AttemptRecord>, bool) {
    let answers = shared.take_completions();
    let mut records = Vec::with_capacity(answers.len());
    let mut outage_over = false;
    let now = Instant::now();
    for c in answers {
        let Some(o) = in_flight.remove(&c.id) else { continue };
        let settled = attempt::settle(shared, engine, &o, c.rtt, c.result);
        shared.limiter.on_sample(o.round, settled.sample, now);
        outage_over |= settled.outage_over;
        records.push(settled.record);
    }
    shared.in_flight.store(in_flight.len(), Ordering::Relaxed);
    (records, outage_over)
}

/// Claims what the limit, the breaker and a `Retry-After` hold allow, and
/// hands the posts over; returns how many were claimed.
fn claim(
    shared: &Shared,
    engine: &Engine,
    conn: &Connection,
    poster: &Poster,
    in_flight: &mut InFlight,
    records: &mut Vec<AttemptRecord>,
) -> Result<usize, StorageError> {
    let room = match engine.breaker.permit() {
        Permit::Deliver => shared.limiter.room(in_flight.len(), Instant::now()),
        Permit::Probe => 1,
        Permit::Wait(_) => 0,
    };
    if room == 0 {
        return Ok(0);
    }
    let probing = engine.breaker.is_open();
    let now = now_millis();
    let lease_ms = i64::try_from(shared.lease.as_millis()).unwrap_or(i64::MAX);
    let claimed = store::claim_due(conn, now, now.saturating_add(lease_ms), room.min(CLAIM_MAX))?;
    if claimed.is_empty() {
        if probing {
            // Nothing to probe with: let the next message be the probe.
            engine.breaker.record_success();
        }
        return Ok(0);
    }
    let count = claimed.len();
    let mut sent = Vec::with_capacity(count);
    for msg in claimed {
        match attempt::prepare(shared, engine, msg) {
            Prepared::Settled(record) => records.push(record),
            Prepared::Post(job, outstanding) => {
                let id = job.id;
                if poster.send(job) {
                    sent.push(outstanding);
                } else {
                    records.push(attempt::requeue(id, now_millis()));
                }
            }
        }
    }
    // Their answers are taken on this thread, after this: the round is
    // known before any of them is settled.
    let round = shared.limiter.on_sent(sent.len(), in_flight.len() + sent.len(), Instant::now());
    for o in sent {
        in_flight.insert(o.id, Outstanding { round, ..o });
    }
    shared.in_flight.store(in_flight.len(), Ordering::Relaxed);
    Ok(count)
}

/// Stop: wait up to [`DRAIN_GRACE`] for outstanding posts, record them,
/// put back the rest.
fn drain(shared: &Shared, conn: &mut Connection, poster: Option<Poster>, mut in_flight: InFlight) {
    let deadline = Instant::now() + DRAIN_GRACE;
    let mut seen = shared.wake_generation();
    let mut records = Vec::new();
    if let Some(engine) = shared.engine.as_ref() {
        while !in_flight.is_empty() && Instant::now() < deadline {
            records.extend(settle_answers(shared, engine, &mut in_flight).0);
            if !in_flight.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                seen = shared.wait_for_work(seen, left.min(Duration::from_millis(100)));
            }
        }
    }
    if let Some(p) = poster {
        p.stop();
    }
    if let Some(engine) = shared.engine.as_ref() {
        records.extend(settle_answers(shared, engine, &mut in_flight).0);
    }
    let now = now_millis();
    let unanswered = in_flight.len();
    records.extend(in_flight.into_keys().map(|id| attempt::requeue(id, now)));
    shared.in_flight.store(0, Ordering::Relaxed);
    if records.is_empty() {
        return;
    }
    match store::record(conn, now, &records) {
        Ok(()) => {
            shared.count(&records);
            if unanswered > 0 {
                tracing::info!(unanswered, "stopping: posts still unanswered are put back to pending");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "stopping: cannot record the last delivery outcomes; their leases are released at the next start")
        }
    }
}

impl Shared {
    /// Counts settled outcomes in the metrics and the delivered total.
    fn count(&self, records: &[AttemptRecord]) {
        let mut delivered = 0u64;
        for r in records {
            let label = match r.settlement {
                Settlement::Delivered => {
                    delivered += 1;
                    "delivered"
                }
                Settlement::Retry { .. } => "retry",
                Settlement::Failed { .. } => "failed",
                Settlement::Requeue { .. } => continue,
            };
            self.metrics.delivery_attempts.inc(&vec![("outcome", label.to_string())]);
        }
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
    }
}
