//! Retry timing: per-message exponential backoff with jitter, and the circuit
//! breaker that makes delivery back off as a whole while eSight is down (one
//! probe at a time instead of every message burning its attempts).
//!
//! The breaker's probe interval grows from `delivery.backoff_initial` to at
//! most [`PROBE_INTERVAL_MAX`] (5 s), not to the message backoff's minutes:
//! an outage is noticed to be over within seconds. Closing reports that it
//! closed, so messages that were only held back by the outage become due at
//! once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The delay before retry number `attempt` (1-based): a uniformly random
/// value between `initial` and `min(max, initial × 2^(attempt−1))` ("full
/// jitter" above a floor of `initial`), or `retry_after` if eSight asked for
/// longer.
pub fn retry_delay(
    attempt: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = initial.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
    let cap = exp.min(max).max(initial.min(max));
    let floor = initial.min(cap);
    let span = cap.saturating_sub(floor);
    let jittered = floor + span.mul_f64(rand::random::<f64>());
    match retry_after {
        Some(asked) if asked > jittered => asked,
        _ => jittered,
    }
}

/// Consecutive transport/5xx failures that open the circuit.
const OPEN_AFTER: u32 = 5;
/// The longest wait between two probes of an open circuit.
pub const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cooldown: Duration },
    Probing { cooldown: Duration },
}

/// What a worker may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Deliver normally.
    Deliver,
    /// Deliver one message to probe whether eSight is back.
    Probe,
    /// Wait this long before asking again.
    Wait(Duration),
}

/// The circuit breaker shared by all workers.
#[derive(Debug)]
pub struct CircuitBreaker {
    state: Mutex<State>,
    initial: Duration,
    max: Duration,
}

impl CircuitBreaker {
    /// A closed breaker whose open periods grow from `initial` to `max`,
    /// both capped at [`PROBE_INTERVAL_MAX`].
    pub fn new(initial: Duration, max: Duration) -> Self {
        let max = max.min(PROBE_INTERVAL_MAX);
        Self { state: Mutex::new(State::Closed { failures: 0 }), initial: initial.min(max), max }
    }

    /// Asks whether to deliver now.
    pub fn permit(&self) -> Permit {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *s {
            State::Closed { .. } => Permit::Deliver,
            State::Probing { .. } => Permit::Wait(self.initial.min(Duration::from_secs(1))),
            State::Open { until, cooldown } => {
                let now = Instant::now();
                if now >= until {
                    *s = State::Probing { cooldown };
                    Permit::Probe
                } else {
                    Permit::Wait(until - now)
                }
            }
        }
    }

    /// How long until a worker may deliver or probe, without changing the
    /// state: `None` when it may now.
    pub fn remaining(&self) -> Option<Duration> {
        match *self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Closed { .. } => None,
            State::Probing { .. } => Some(self.initial.min(Duration::from_secs(1))),
            State::Open { until, .. } => until.checked_duration_since(Instant::now()),
        }
    }

    /// eSight answered (any status that is not an outage). True when this
    /// closed an open (or probing) circuit: the outage is over.
    pub fn record_success(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let was_open = !matches!(*s, State::Closed { .. });
        *s = State::Closed { failures: 0 };
        was_open
    }

    /// eSight was unreachable or failing; `hint` is its `Retry-After`
    /// (honoured up to [`PROBE_INTERVAL_MAX`] × 12, a minute).
    /// Returns when the circuit reopens if this failure opened it.
    pub fn record_failure(&self, hint: Option<Duration>) -> Option<Instant> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let open = |cooldown: Duration| {
            let wait = hint.map_or(cooldown, |h| h.min(PROBE_INTERVAL_MAX * 12).max(cooldown));
            State::Open { until: Instant::now() + wait, cooldown }
        };
        let next = match *s {
            State::Closed { failures } if failures + 1 < OPEN_AFTER => {
                State::Closed { failures: failures + 1 }
            }
            State::Closed { .. } => open(self.initial),
            State::Probing { cooldown } => open((cooldown * 2).min(self.max)),
            State::Open { until, cooldown } => State::Open { until, cooldown },
        };
        *s = next;
        match *s {
            State::Open { until, .. } => Some(until),
            _ => None,
        }
    }

    /// True while eSight is considered down.
    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock().unwrap_or_else(|e| e.into_inner()), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_in_bounds_and_honour_retry_after() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 1..=12 {
            let cap = (i * 2u32.pow(attempt - 1)).min(m);
            for _ in 0..50 {
                let d = retry_delay(attempt, i, m, None);
                assert!(d >= i && d <= cap, "attempt {attempt}: {d:?}");
            }
        }
        assert_eq!(retry_delay(1, i, m, Some(Duration::from_secs(5))), Duration::from_secs(5));
    }

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_probes_one_at_a_time() {
        let b = CircuitBreaker::new(Duration::from_millis(1), Duration::from_millis(8));
        for _ in 0..OPEN_AFTER - 1 {
            assert_eq!(b.record_failure(None), None);
        }
        assert!(b.record_failure(None).is_some());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(b.permit(), Permit::Probe);
        assert!(matches!(b.permit(), Permit::Wait(_)), "a second worker waits while one probes");
        assert!(b.remaining().is_some(), "a probe is in flight");
        assert!(b.record_success(), "the probe's success closes the circuit");
        assert!(!b.record_success(), "closing a closed circuit reports nothing");
        assert_eq!(b.remaining(), None);
        assert_eq!(b.permit(), Permit::Deliver);
        assert!(!b.is_open());
    }

    #[test]
    fn probes_of_a_long_outage_stay_seconds_apart() {
        let b = CircuitBreaker::new(Duration::from_secs(1), Duration::from_secs(600));
        for _ in 0..OPEN_AFTER {
            b.record_failure(None);
        }
        let mut cooldowns = Vec::new();
        for _ in 0..10 {
            // Force the probe now, then fail it.
            if let State::Open { cooldown, .. } = *b.state.lock().unwrap() {
                cooldowns.push(cooldown);
            }
            let cooldown = match *b.state.lock().unwrap() {
                State::Open { cooldown, .. } => cooldown,
                _ => unreachable!("open"),
            };
            *b.state.lock().unwrap() = State::Open { until: Instant::now(), cooldown };
            assert_eq!(b.permit(), Permit::Probe);
            let until = b.record_failure(None).expect("a failed probe reopens");
            assert!(until <= Instant::now() + PROBE_INTERVAL_MAX, "{cooldowns:?}");
        }
        assert_eq!(cooldowns[..4], [1, 2, 4, 5].map(Duration::from_secs));
        assert_eq!(cooldowns.last(), Some(&PROBE_INTERVAL_MAX));
    }
}
