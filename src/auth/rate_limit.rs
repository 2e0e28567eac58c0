//! Per-API-key rate limiting in memory (requests per second and a burst),
//! the quota the original got from its API gateway: `governor`'s GCRA (the
//! token bucket's equivalent, one atomic compare-and-swap per check, no
//! lock) on the monotonic clock. No database access. [`KeyRate`] is the
//! parsed quota: finite and within bounds, so no number a client or the
//! database holds can make the limiter's arithmetic overflow (the largest
//! burst times the longest period is 10^18 ns, inside governor's u64
//! nanoseconds).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};

/// Why a rate limit was refused (the message is shown to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// `rate_per_sec` is not a number in range.
    #[error(
        "rate_per_sec must be 0 (unlimited) or from {min} to {max} requests per second",
        min = KeyRate::MIN_PER_SEC,
        max = KeyRate::MAX_PER_SEC
    )]
    Rate,
    /// `burst` is out of range.
    #[error("burst must be from 1 to {max}", max = KeyRate::MAX_BURST)]
    Burst,
    /// A burst without a rate.
    #[error("burst needs rate_per_sec")]
    BurstWithoutRate,
}

/// A key's quota: `per_sec` requests per second on average, up to `burst`
/// at once. Built only through [`KeyRate::parse`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyRate {
    per_sec: f64,
    burst: u32,
}

impl KeyRate {
    /// The slowest rate: one request every 1,000 seconds. Anything slower is
    /// a mistake (use a revoked key instead), and it bounds the wait a `429`
    /// announces.
    pub const MIN_PER_SEC: f64 = 0.001;
    /// The fastest rate; far above what one appliance serves.
    pub const MAX_PER_SEC: f64 = 1_000_000.0;
    /// The largest burst.
    pub const MAX_BURST: u32 = 1_000_000;

    /// Parses a requested quota: `per_sec` 0 means unlimited (`None`);
    /// otherwise it must be finite and within [`KeyRate::MIN_PER_SEC`]..=
    /// [`KeyRate::MAX_PER_SEC`]. `burst` defaults to the rate rounded up
    /// (at least 1) and must be 1..=[`KeyRate::MAX_BURST`].
    pub fn parse(per_sec: Option<f64>, burst: Option<u32>) -> Result<Option<Self>, RateError> {
        let Some(per_sec) = per_sec else {
            return if burst.is_some() { Err(RateError::BurstWithoutRate) } else { Ok(None) };
        };
        if per_sec == 0.0 {
            return if burst.is_some() { Err(RateError::BurstWithoutRate) } else { Ok(None) };
        }
        if !(Self::MIN_PER_SEC..=Self::MAX_PER_SEC).contains(&per_sec) {
            return Err(RateError::Rate);
        }
        // In range, so the rounded-up rate fits a u32 exactly.
        let burst = burst.unwrap_or(per_sec.ceil().max(1.0) as u32);
        if !(1..=Self::MAX_BURST).contains(&burst) {
            return Err(RateError::Burst);
        }
        Ok(Some(Self { per_sec, burst }))
    }

    /// Requests per second.
    pub fn per_sec(&self) -> f64 {
        self.per_sec
    }

    /// Requests at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The quota for values stored before they were checked (or written to
    /// the database by hand): brought into range rather than refused, so a
    /// bad row limits its key instead of panicking or unlocking it.
    pub fn clamped(per_sec: f64, burst: u32) -> Self {
        let per_sec = if per_sec.is_nan() { Self::MIN_PER_SEC } else { per_sec };
        Self {
            per_sec: per_sec.clamp(Self::MIN_PER_SEC, Self::MAX_PER_SEC),
            burst: burst.clamp(1, Self::MAX_BURST),
        }
    }
}

/// A key's limiter: up to `burst` requests at once, refilled at `per_sec`.
#[derive(Debug)]
pub struct RateLimiter {
    requested: (f64, u32),
    gcra: governor::RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens refilled at `per_sec`; values out of
    /// range are brought into it ([`KeyRate::clamped`]).
    pub fn new(per_sec: f64, burst: u32) -> Self {
        let rate = KeyRate::clamped(per_sec, burst);
        // In range: the period is 1 µs to 1,000 s, never zero.
        let period = Duration::from_secs_f64(1.0 / rate.per_sec);
        let max_burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = governor::Quota::with_period(period).unwrap_or(governor::Quota::per_second(max_burst));
        Self {
            requested: (per_sec, burst),
            gcra: governor::RateLimiter::direct_with_clock(quota.allow_burst(max_burst), MonotonicClock),
        }
    }

    /// The configured (rate, burst), as given to [`RateLimiter::new`].
    pub fn rate(&self) -> (f64, u32) {
        self.requested
    }

    /// Takes one token, or says how long until one is available (at most
    /// 1 / [`KeyRate::MIN_PER_SEC`] seconds).
    pub fn try_take(&self) -> Result<(), Duration> {
        self.gcra.check().map_err(|not_until| not_until.wait_time_from(MonotonicClock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_requests_wait() {
        let l = RateLimiter::new(1.0, 3);
        assert!((0..3).all(|_| l.try_take().is_ok()));
        let wait = l.try_take().unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
    }

    #[test]
    fn the_wait_is_the_time_to_the_next_token() {
        let l = RateLimiter::new(0.5, 1);
        assert!(l.try_take().is_ok());
        let wait = l.try_take().unwrap_err();
        assert!(wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2), "{wait:?}");
        assert_eq!(l.rate(), (0.5, 1));
        assert_eq!(RateLimiter::new(f64::NAN, 0).rate().1, 0, "rate() tells what was asked for");
    }

    const HOSTILE: [f64; 10] = [
        1e-300,
        f64::MIN_POSITIVE,
        5e-324,
        1e300,
        f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -1.0,
        -0.0,
    ];

    #[test]
    fn no_number_makes_the_bucket_panic() {
        for rate in HOSTILE {
            for burst in [0, 1, u32::MAX] {
                let l = RateLimiter::new(rate, burst);
                for _ in 0..3 {
                    if let Err(wait) = l.try_take() {
                        assert!(wait <= Duration::from_secs(1000), "{rate} {burst}: {wait:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn requested_quotas_are_parsed_into_range() {
        for rate in HOSTILE.into_iter().chain([0.0009, 1_000_001.0]) {
            if rate == 0.0 {
                continue;
            }
            assert_eq!(KeyRate::parse(Some(rate), None), Err(RateError::Rate), "{rate}");
        }
        assert_eq!(KeyRate::parse(None, None), Ok(None));
        assert_eq!(KeyRate::parse(Some(0.0), None), Ok(None), "0 = unlimited");
        assert_eq!(KeyRate::parse(Some(0.0), Some(5)), Err(RateError::BurstWithoutRate));
        assert_eq!(KeyRate::parse(None, Some(5)), Err(RateError::BurstWithoutRate));
        let r = KeyRate::parse(Some(2.5), None).unwrap().unwrap();
        assert_eq!((r.per_sec(), r.burst()), (2.5, 3));
        let r = KeyRate::parse(Some(0.001), None).unwrap().unwrap();
        assert_eq!(r.burst(), 1);
        assert_eq!(KeyRate::parse(Some(10.0), Some(0)), Err(RateError::Burst));
        assert_eq!(KeyRate::parse(Some(10.0), Some(1_000_001)), Err(RateError::Burst));
        assert!(KeyRate::parse(Some(1e6), Some(1_000_000)).unwrap().is_some());
    }
}
