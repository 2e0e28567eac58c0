//! Adaptive concurrency for the consumption posts: how many may be
//! outstanding at eSight at once.
//!
//! The limit behaves like a TCP congestion window driven by latency (the
//! approach of TCP Vegas, HyStart and Netflix's `concurrency-limits`):
//!
//! - posts are grouped in **rounds**: a round takes the posts sent during
//!   one base round trip (at least 20 ms, at most 1 s) and is judged once
//!   every one of them is answered — so a grown limit is judged by the
//!   answers to exactly the posts it let out, not diluted by older ones, and
//!   one slow answer moves nothing;
//! - the **base latency** is the lowest round trip seen over the last 30 to
//!   60 s: what eSight takes when nothing queues there;
//! - while latency stays flat the limit **grows**: in slow start each answer
//!   within `base × 1.1 + 5 ms` to a post of a round that filled the limit
//!   adds one (doubling per round trip, as TCP's window grows per ACK); a
//!   round whose mean exceeds that ends slow start, and after it a round
//!   within `base × 1.25 + 5 ms` that filled the limit adds a sixteenth;
//! - a round whose mean rose above that **shrinks** the limit in proportion
//!   (`tolerated / mean`, at most halving): eSight is queueing our posts;
//! - an **overload** (`429`, `503`, a timeout, a refused connection) halves
//!   it at once — once per base round trip, however many arrive together —
//!   and ends slow start; a `Retry-After` on it holds every new post back
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
/// Slow start doubles only while the mean latency stays within
/// `base × SLOW_START_EXIT + SLACK`.
const SLOW_START_EXIT: f64 = 1.1;
/// Absolute slack on the tolerated latency: scheduling noise on a busy
/// machine, which matters when eSight answers in a millisecond.
const SLACK: Duration = Duration::from_millis(5);
/// Shortest and longest sending phase of a round.
const MIN_ROUND: Duration = Duration::from_millis(20);
const MAX_ROUND: Duration = Duration::from_secs(1);
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

/// The round a post was sent in (returned by [`Limiter::on_sent`], given
/// back with its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundId(u64);

impl RoundId {
    /// A post not sent yet (no round has this id).
    pub const UNSENT: RoundId = RoundId(u64::MAX);
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
    /// The round posts are sent in now.
    sending: Round,
    /// The previous round, until all its posts are answered.
    closing: Option<Round>,
    next_round: u64,
    last_cut: Option<Instant>,
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

/// The posts of one round and their answers so far.
#[derive(Debug)]
struct Round {
    id: u64,
    started: Instant,
    sent: u32,
    answered: u32,
    rtt_sum: Duration,
    overloaded: u32,
    /// Most posts outstanding while this round sent.
    peak_in_flight: usize,
    /// The highest limit while this round sent.
    limit_seen: f64,
}

impl Round {
    fn new(id: u64, started: Instant) -> Self {
        Self {
            id,
            started,
            sent: 0,
            answered: 0,
            rtt_sum: Duration::ZERO,
            overloaded: 0,
            peak_in_flight: 0,
            limit_seen: 0.0,
        }
    }

    /// Whether this round's posts filled the limit ("window-limited", as
    /// TCP says): only then may its answers grow it — an idle appliance
    /// keeps its limit where it is.
    fn used_the_limit(&self) -> bool {
        self.peak_in_flight as f64 >= (self.limit_seen * 0.9).floor()
    }

    fn complete(&self) -> bool {
        self.answered + self.overloaded >= self.sent
    }
}

impl State {
    /// The sending phase of a round: one base round trip.
    fn phase(&self) -> Duration {
        self.base.get().unwrap_or(Duration::from_millis(100)).clamp(MIN_ROUND, MAX_ROUND)
    }

    /// Judges the closing round once all its posts are answered, and starts
    /// a new sending round once the current one's phase is over and no
    /// earlier round waits for answers (one round judged at a time).
    fn advance(&mut self, max: f64, now: Instant) {
        if self.closing.as_ref().is_some_and(Round::complete) {
            let done = self.closing.take().expect("checked");
            self.judge(&done, max, now);
        }
        if self.closing.is_some() || now.saturating_duration_since(self.sending.started) < self.phase() {
            return;
        }
        let id = self.next_round;
        self.next_round += 1;
        let finished = std::mem::replace(&mut self.sending, Round::new(id, now));
        if finished.sent == 0 {
            return;
        }
        if finished.complete() {
            self.judge(&finished, max, now);
        } else {
            self.closing = Some(finished);
        }
    }

    /// Moves the limit by a fully answered round.
    fn judge(&mut self, r: &Round, max: f64, now: Instant) {
        if r.overloaded > 0 || r.answered == 0 {
            return; // Overloads cut when they arrive.
        }
        let mean = r.rtt_sum / r.answered;
        let Some(base) = self.base.get() else { return };
        let tolerated = base.mul_f64(TOLERANCE) + SLACK;
        if mean > tolerated {
            let gradient = (tolerated.as_secs_f64() / mean.as_secs_f64()).clamp(0.5, 1.0);
            self.limit = (self.limit * gradient).max(1.0);
            self.slow_start = false;
            self.last_cut = Some(now);
            return;
        }
        if self.slow_start && mean > base.mul_f64(SLOW_START_EXIT) + SLACK {
            self.slow_start = false;
        }
        // Slow start grew the limit with each answer already; after it, a
        // used limit grows by a sixteenth per round.
        if !self.slow_start && r.used_the_limit() {
            self.limit = (self.limit + (self.limit / 16.0).max(1.0)).min(max);
        }
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
                sending: Round::new(0, now),
                closing: None,
                next_round: 1,
                last_cut: None,
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

    /// Notes `count` posts sent now, with `in_flight` outstanding after
    /// them; returns the round to hand back with their answers.
    pub fn on_sent(&self, count: usize, in_flight: usize, now: Instant) -> RoundId {
        let mut s = self.lock();
        s.advance(self.max as f64, now);
        let limit = s.limit;
        let r = &mut s.sending;
        r.sent = r.sent.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
        r.peak_in_flight = r.peak_in_flight.max(in_flight);
        r.limit_seen = r.limit_seen.max(limit);
        RoundId(r.id)
    }

    /// Takes the outcome of one post sent in `round`.
    pub fn on_sample(&self, round: RoundId, sample: Sample, now: Instant) {
        let mut s = self.lock();
        if let Sample::Answered { rtt } = sample {
            s.base.note(rtt, now);
            s.recent_rtt = Some(match s.recent_rtt {
                Some(r) => r - r / 8 + rtt / 8,
                None => rtt,
            });
        }
        if let Sample::Overloaded { retry_after } = sample {
            if let Some(hint) = retry_after {
                let until = now + hint.min(MAX_HOLD);
                s.hold_until = Some(s.hold_until.map_or(until, |h| h.max(until)));
            }
            let phase = s.phase();
            if s.last_cut.is_none_or(|at| now.saturating_duration_since(at) >= phase) {
                s.limit = (s.limit * 0.5).max(1.0);
                s.slow_start = false;
                s.last_cut = Some(now);
            }
        }
        let round = if s.sending.id == round.0 {
            Some(&mut s.sending)
        } else {
            s.closing.as_mut().filter(|r| r.id == round.0)
        };
        let mut grow = false;
        if let Some(r) = round {
            match sample {
                Sample::Answered { rtt } => {
                    r.answered += 1;
                    r.rtt_sum += rtt;
                    grow = r.used_the_limit();
                }
                Sample::Overloaded { .. } => r.overloaded += 1,
            }
        }
        // Slow start: each answer at the base latency adds one post, which
        // doubles the limit per round trip (TCP's cwnd + 1 per ACK).
        if let (true, Sample::Answered { rtt }, Some(base)) = (grow && s.slow_start, sample, s.base.get())
            && rtt <= base.mul_f64(SLOW_START_EXIT) + SLACK
        {
            s.limit = (s.limit + 1.0).min(self.max as f64);
        }
        s.advance(self.max as f64, now);
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

    /// Plays `rounds` rounds in which the limit is used in full and every
    /// post is answered after `rtt`; returns the limit after each.
    fn run(l: &Limiter, start: Instant, rounds: u32, rtt: Duration) -> (Instant, Vec<usize>) {
        let mut now = start;
        let mut limits = Vec::new();
        for _ in 0..rounds {
            let limit = l.view(now).limit;
            let round = l.on_sent(limit, limit, now);
            now += rtt;
            for _ in 0..limit {
                l.on_sample(round, Sample::Answered { rtt }, now);
            }
            // The next round's sends start the rotation that judges this one.
            now += MAX_ROUND;
            let _ = l.on_sent(0, 0, now);
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
            let round = l.on_sent(2, 2, now);
            now += 100 * MS;
            l.on_sample(round, Sample::Answered { rtt: 100 * MS }, now);
            l.on_sample(round, Sample::Answered { rtt: 100 * MS }, now);
            now += MAX_ROUND;
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
    fn slow_start_ends_when_latency_rises_a_little_and_growth_goes_on_by_sixteenths() {
        let t0 = Instant::now();
        let l = Limiter::new(1000, t0);
        let (now, limits) = run(&l, t0, 3, 100 * MS);
        assert_eq!(limits.last(), Some(&64));
        let (_, limits) = run(&l, now, 2, 120 * MS);
        assert_eq!(limits, [68, 72], "within tolerance (130 ms) but above 115 ms: additive");
    }

    #[test]
    fn a_round_is_judged_by_its_own_posts_once_all_are_answered() {
        let t0 = Instant::now();
        let l = Limiter::new(1000, t0);
        let (now, limits) = run(&l, t0, 3, 100 * MS);
        assert_eq!(limits.last(), Some(&64));
        // A round sends 64 posts; eSight serves them behind 64 others, so
        // they answer after 200 ms. Answers to older posts (another round)
        // at 100 ms meanwhile do not count for it.
        let round = l.on_sent(64, 128, now);
        let older = l.on_sent(0, 128, now);
        assert_eq!(round, older, "same sending phase, same round");
        let t = now + 150 * MS;
        let _ = l.on_sent(1, 128, t); // the phase is over: a new round starts
        for _ in 0..63 {
            l.on_sample(round, Sample::Answered { rtt: 200 * MS }, now + 200 * MS);
        }
        assert_eq!(l.view(t).limit, 64, "no verdict before the round's last answer");
        l.on_sample(round, Sample::Answered { rtt: 200 * MS }, now + 200 * MS);
        assert_eq!(l.view(t).limit, 41, "64 × 130/200");
    }

    #[test]
    fn overload_halves_once_per_round_trip_and_retry_after_holds_every_post() {
        let t0 = Instant::now();
        let l = Limiter::new(1000, t0);
        let (now, _) = run(&l, t0, 3, 100 * MS);
        assert_eq!(l.room(10, now), 54);
        let round = l.on_sent(64, 64, now);
        for _ in 0..20 {
            l.on_sample(round, Sample::Overloaded { retry_after: Some(Duration::from_secs(2)) }, now);
        }
        assert_eq!(l.room(0, now), 0, "held by Retry-After");
        assert_eq!(l.held_until(now), Some(now + Duration::from_secs(2)));
        assert_eq!(l.view(now).limit, 32, "twenty 429s together cut once");
        l.on_sample(round, Sample::Overloaded { retry_after: None }, now + 200 * MS);
        assert_eq!(l.view(now).limit, 16, "a later one cuts again");
        let after_hold = now + Duration::from_secs(2);
        assert_eq!(l.room(0, after_hold), 16);
        assert_eq!(l.held_until(after_hold), None);
    }

    #[test]
    fn a_huge_retry_after_holds_at_most_a_minute() {
        let t0 = Instant::now();
        let l = Limiter::new(10, t0);
        let round = l.on_sent(1, 1, t0);
        l.on_sample(round, Sample::Overloaded { retry_after: Some(Duration::from_secs(u64::MAX / 4)) }, t0);
        assert_eq!(l.held_until(t0), Some(t0 + MAX_HOLD));
    }

    #[test]
    fn the_limit_never_falls_below_one() {
        let t0 = Instant::now();
        let l = Limiter::new(4, t0);
        let mut now = t0;
        for _ in 0..20 {
            now += MAX_ROUND;
            let round = l.on_sent(1, 1, now);
            l.on_sample(round, Sample::Overloaded { retry_after: None }, now);
        }
        assert_eq!(l.view(now).limit, 1);
        assert_eq!(l.room(0, now), 1);
    }

    #[test]
    fn the_base_latency_follows_a_lasting_change() {
        let t0 = Instant::now();
        let l = Limiter::new(100, t0);
        let round = l.on_sent(71, 1, t0);
        l.on_sample(round, Sample::Answered { rtt: 10 * MS }, t0);
        let mut now = t0;
        for _ in 0..70 {
            now += Duration::from_secs(1);
            l.on_sample(round, Sample::Answered { rtt: 200 * MS }, now);
        }
        assert_eq!(l.view(now).base_rtt, Some(200 * MS));
    }
}
