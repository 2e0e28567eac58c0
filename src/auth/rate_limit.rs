//! Per-API-key rate limiting: a token bucket in memory (requests per second
//! and a burst), the quota the original got from its API gateway. No
//! database access.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: u32,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens refilled at `per_sec`.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        Self { per_sec, burst: burst.max(1), state: Mutex::new((f64::from(burst.max(1)), Instant::now())) }
    }

    /// The configured (rate, burst).
    pub fn rate(&self) -> (f64, u32) {
        (self.per_sec, self.burst)
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.per_sec;
        s.0 = (s.0 + refill).min(f64::from(self.burst));
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / self.per_sec))
        }
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
}
