//! Adaptive concurrency for the consumption posts: how many may be
//! outstanding at eSight at once.
//!
//! The limit behaves like a TCP congestion window driven by latency (the
//! approach of TCP Vegas and Netflix's `concurrency-limits`):
//!
//! - samples are judged per **window** of about two base round trips
//!   (50 ms to 1 s), so one slow answer moves nothing;
//! - the **base latency** is the lowest round trip seen over the last 30 to
//!   60 s: what eSight takes when nothing queues there;
//! - a window whose mean round trip stays within
//!   `base × 1.25 + 5 ms` and which used the limit **grows** it — doubling
//!   per window at first (slow start), then by a sixteenth;
//! - a window whose mean rose above that **shrinks** the limit in proportion
//!   (`tolerated / mean`, at most halving): eSight is queueing our posts;
//! - an **overload** (`429`, `503`, a timeout, a refused connection) halves
//!   it and ends slow start; a `Retry-After` on it holds every new post back
//!   for that long (at most [`MAX_HOLD`]);
//! - the limit stays between 1 and `delivery.max_in_flight`.
//!
//! Time is passed in, so the rules are tested without clocks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limit a fresh start begins with ("start low").
pub const INITIAL_LIMIT: usize = 8;
/// Mean latency up to `base × TOLERANCE + SLACK` counts as "flat".
const TOLERANCE: f64 = 1.25;
/// Absolute slack on the tolerated latency: scheduling noise on a busy
/// machine, which matters when eSight answers in a millisecond.
const SLACK: Duration = Duration::from_millis(5);
/// Shortest and longest judging window.
const MIN_WINDOW: Duration = Duration::from_millis(50);
const MAX_WINDOW: Duration = Duration::from_secs(1);
/// The base latency is the minimum over the current and the previous bucket
/// of this length, so it follows a lasting change of eSight's latency.
const BASE_BUCKET: Duration = Duration::from_secs(30);
/// The longest `Retry-After` hold honoured for all posts at once (a larger
/// value still delays the message it came with, through its backoff).
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// How one consumption post ended, for the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// eSight answered with a status that is not an overload, after `rtt`.
    Answered {
        /// Time from sending the request to its answer.
        rtt: Duration,
    },
    /// eSight is overloaded or out of reach: `429`, `503`, a timeout, a
    /// refused or reset connection; `retry_after` is its hint.
    Overloaded {
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
}

/// What the limiter shows to `/metrics`, the stats and the admin page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterView {
    /// Posts allowed at once now.
    pub limit: usize,
    /// Lowest recent round trip, if any post was answered.
    pub base_rtt: Option<Duration>,
    /// Moving average (weight 1/8) of the round trips.
    pub recent_rtt: Option<Duration>,
    /// Time left of a `Retry-After` hold.
    pub held_for: Option<Duration>,
}

/// The shared limiter.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    max: usize,
}

#[derive(Debug)]
struct State {
    limit: f64,
    slow_start: bool,
    base: BaseRtt,
    window: Window,
    hold_until: Option<Instant>,
    recent_rtt: Option<Duration>,
}

/// Minimum round trip over two buckets.
#[derive(Debug)]
struct BaseRtt {
    bucket_started: Instant,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl BaseRtt {
    fn note(&mut self, rtt: Duration, now: Instant) {
        if now.saturating_duration_since(self.bucket_started) >= BASE_BUCKET {
            self.previous = self.current.take();
            self.bucket_started = now;
        }
        self.current = Some(self.current.map_or(rtt, |c| c.min(rtt)));
    }

    fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The samples of the window being judged.
#[derive(Debug)]
struct Window {
    started: Instant,
    answered: u32,
    rtt_sum: Duration,
    overloaded: u32,
    peak_in_flight: usize,
}

impl Window {
    fn new(started: Instant, in_flight: usize) -> Self {
        Self { started, answered: 0, rtt_sum: Duration::ZERO, overloaded: 0, peak_in_flight: in_flight }
    }
}

impl Limiter {
    /// A limiter starting at [`INITIAL_LIMIT`] (or `max` if lower).
    pub fn new(max: usize, now: Instant) -> Self {
        let max = max.max(1);
        Self {
            state: Mutex::new(State {
                limit: INITIAL_LIMIT.min(max) as f64,
                slow_start: true,
                base: BaseRtt { bucket_started: now, current: None, previous: None },
                window: Window::new(now, 0),
                hold_until: None,
                recent_rtt: None,
            }),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The upper bound (`delivery.max_in_flight`).
    pub fn max(&self) -> usize {
        self.max
    }

    /// How many more posts may start now, with `in_flight` outstanding: 0
    /// during a `Retry-After` hold.
    pub fn room(&self, in_flight: usize, now: Instant) -> usize {
        let s = self.lock();
        if s.hold_until.is_some_and(|until| now < until) {
            return 0;
        }
        (s.limit as usize).max(1).saturating_sub(in_flight)
    }

    /// When a `Retry-After` hold ends, if one is in force.
    pub fn held_until(&self, now: Instant) -> Option<Instant> {
        self.lock().hold_until.filter(|until| now < *until)
    }

    /// Notes that `in_flight` posts are outstanding after a dispatch.
    pub fn note_in_flight(&self, in_flight: usize) {
        let mut s = self.lock();
        s.window.peak_in_flight = s.window.peak_in_flight.max(in_flight);
    }

    /// Takes one post's outcome; judges the window when it is complete.
    /// `in_flight` is the number still outstanding.
    pub fn on_sample(&self, sample: Sample, in_flight: usize, now: Instant) {
        let mut s = self.lock();
        match sample {
            Sample::Answered { rtt } => {
                s.base.note(rtt, now);
                s.recent_rtt = Some(match s.recent_rtt {
                    Some(r) => r - r / 8 + rtt / 8,
                    None => rtt,
                });
                s.window.answered += 1;
                s.window.rtt_sum += rtt;
            }
            Sample::Overloaded { retry_after } => {
                s.window.overloaded += 1;
                if let Some(hint) = retry_after {
                    let until = now + hint.min(MAX_HOLD);
                    s.hold_until = Some(s.hold_until.map_or(until, |h| h.max(until)));
                }
            }
        }
        let window_len =
            s.base.get().map_or(Duration::from_millis(100), |b| b * 2).clamp(MIN_WINDOW, MAX_WINDOW);
        if now.saturating_duration_since(s.window.started) >= window_len {
            self.judge(&mut s);
            s.window = Window::new(now, in_flight);
        }
    }

    /// Moves the limit by the window's samples.
    fn judge(&self, s: &mut State) {
        let w = &s.window;
        let max = self.max as f64;
        if w.overloaded > 0 {
            s.limit = (s.limit * 0.5).max(1.0);
            s.slow_start = false;
            return;
        }
        if w.answered == 0 {
            return;
        }
        let mean = w.rtt_sum / w.answered;
        let tolerated = s.base.get().map(|b| b.mul_f64(TOLERANCE) + SLACK);
        if let Some(tolerated) = tolerated
            && mean > tolerated
        {
            let gradient = (tolerated.as_secs_f64() / mean.as_secs_f64()).clamp(0.5, 1.0);
            s.limit = (s.limit * gradient).max(1.0);
            s.slow_start = false;
            return;
        }
        // Grow only a limit that was used ("window-limited", as TCP says):
        // an idle appliance keeps its limit where it is.
        if w.peak_in_flight as f64 >= (s.limit * 0.9).floor() {
            let grown = if s.slow_start { s.limit * 2.0 } else { s.limit + (s.limit / 16.0).max(1.0) };
            s.limit = grown.min(max);
        }
    }

    /// The current state, for display.
    pub fn view(&self, now: Instant) -> LimiterView {
        let s = self.lock();
        LimiterView {
            limit: (s.limit as usize).max(1),
            base_rtt: s.base.get(),
            recent_rtt: s.recent_rtt,
            held_for: s
                .hold_until
                .and_then(|until| until.checked_duration_since(now))
                .filter(|d| !d.is_zero()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `windows` windows of answers at `rtt`, each using the limit in
    /// full; returns the limit after each.
    fn run(l: &Limiter, start: Instant, windows: u32, rtt: Duration) -> (Instant, Vec<usize>) {
        let mut now = start;
        let mut limits = Vec::new();
        for _ in 0..windows {
            let limit = l.view(now).limit;
            l.note_in_flight(limit);
            for _ in 0..limit.min(50) {
                l.on_sample(Sample::Answered { rtt }, limit, now);
            }
            now += MAX_WINDOW;
            l.on_sample(Sample::Answered { rtt }, limit, now);
            limits.push(l.view(now).limit);
        }
        (now, limits)
    }

    #[test]
    fn starts_low_and_doubles_while_latency_stays_flat_up_to_the_maximum() {
        let t0 = Instant::now();
        let l = Limiter::new(1000, t0);
        assert_eq!(l.view(t0).limit, INITIAL_LIMIT);
        let (_, limits) = run(&l, t0, 9, 100 * MS);
        assert_eq!(limits[..7], [16, 32, 64, 128, 256, 512, 1000]);
        assert_eq!(limits[8], 1000, "never above the maximum");
    }

    #[test]
    fn an_unused_limit_does_not_grow() {
        let t0 = Instant::now();
        let l = Limiter::new(1000, t0);
        let mut now = t0;
        for _ in 0..10 {
            l.note_in_flight(2);
            l.on_sample(Sample::Answered { rtt: 100 * MS }, 1, now);
            now += MAX_WINDOW;
            l.on_sample(Sample::Answered { rtt: 100 * MS }, 1, now);
        }
        assert_eq!(l.view(now).limit, INITIAL_LIMIT);
    }

    #[test]
    fn rising_latency_cuts_in_proportion_and_ends_slow_start() {
        let t0 = Instant::now();
        let l = Limiter::new(1000, t0);
        let (now, limits) = run(&l, t0, 3, 100 * MS);
        assert_eq!(limits.last(), Some(&64));
        // eSight now queues: every answer takes 250 ms (tolerated 130 ms).
        let (now, limits) = run(&l, now, 1, 250 * MS);
        assert_eq!(limits, [33], "64 × 130/250");
        // Back to flat: growth is additive now, not doubling.
        let (_, limits) = run(&l, now, 2, 100 * MS);
        assert_eq!(limits, [35, 37]);
    }

    #[test]
    fn overload_halves_once_per_window_and_retry_after_holds_every_post() {
        let t0 = Instant::now();
        let l = Limiter::new(1000, t0);
        let (now, _) = run(&l, t0, 3, 100 * MS);
        assert_eq!(l.room(10, now), 54);
        for _ in 0..20 {
            l.on_sample(Sample::Overloaded { retry_after: Some(Duration::from_secs(2)) }, 60, now);
        }
        assert_eq!(l.room(0, now), 0, "held by Retry-After");
        assert_eq!(l.held_until(now), Some(now + Duration::from_secs(2)));
        let later = now + MAX_WINDOW;
        l.on_sample(Sample::Overloaded { retry_after: None }, 40, later);
        assert_eq!(l.view(later).limit, 32, "twenty 429s in one window cut once");
        let after_hold = now + Duration::from_secs(2);
        assert_eq!(l.room(0, after_hold), 32);
        assert_eq!(l.held_until(after_hold), None);
    }

    #[test]
    fn a_huge_retry_after_holds_at_most_a_minute() {
        let t0 = Instant::now();
        let l = Limiter::new(10, t0);
        l.on_sample(Sample::Overloaded { retry_after: Some(Duration::from_secs(u64::MAX / 4)) }, 0, t0);
        assert_eq!(l.held_until(t0), Some(t0 + MAX_HOLD));
    }

    #[test]
    fn the_limit_never_falls_below_one() {
        let t0 = Instant::now();
        let l = Limiter::new(4, t0);
        let mut now = t0;
        for _ in 0..20 {
            now += MAX_WINDOW;
            l.on_sample(Sample::Overloaded { retry_after: None }, 0, now);
        }
        assert_eq!(l.view(now).limit, 1);
        assert_eq!(l.room(0, now), 1);
    }

    #[test]
    fn the_base_latency_follows_a_lasting_change() {
        let t0 = Instant::now();
        let l = Limiter::new(100, t0);
        l.on_sample(Sample::Answered { rtt: 10 * MS }, 0, t0);
        let mut now = t0;
        for _ in 0..70 {
            now += Duration::from_secs(1);
            l.on_sample(Sample::Answered { rtt: 200 * MS }, 0, now);
        }
        assert_eq!(l.view(now).base_rtt, Some(200 * MS));
    }
}
