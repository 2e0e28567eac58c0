//! Coalescing of `access_denied` events, so that a flood of refused requests
//! costs a counter increment instead of a synced audit row each.
//!
//! A refusal is keyed by what makes it distinct for an operator: the client
//! IP, the guard's reason, and the API key and user learned before the
//! refusal (both bounded by the real identities, not by what an attacker
//! sends). The first refusal of a key in a window ([`WINDOW`], 60 s) is
//! written at once, as before; further ones in that window are only counted
//! here and written as ONE summary event (`detail.count`, `detail.first`,
//! `detail.last`) when the window closes: housekeeping takes due summaries
//! every tick and all of them at a clean shutdown, so nothing counted is lost
//! by a clean stop. A `kill -9` loses at most the repeat counts of the open
//! windows (one window's worth), never a first event, which is on disk
//! before the refusal is answered.
//!
//! The map holds at most [`MAX_KEYS`] keys; a refusal with a new key beyond
//! that is counted in a single overflow tally (and the
//! `energyload_access_denied_overflow_total` metric) and written as one
//! summary event with reason `coalescing_overflow`, so an attacker rotating
//! addresses cannot grow memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Actor, Event, EventType, RequestFacts};
use crate::clock::format_millis;

/// How long a window of coalesced refusals stays open.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Most distinct keys counted at once.
pub const MAX_KEYS: usize = 10_000;

/// The reason in the summary event of refusals not counted per key.
pub const OVERFLOW_REASON: &str = "coalescing_overflow";

/// What makes a refusal distinct.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DenialKey {
    ip: Option<String>,
    reason: &'static str,
    user_id: Option<String>,
    api_key_id: Option<String>,
}

impl DenialKey {
    fn of(reason: &'static str, event: &Event) -> Self {
        Self {
            ip: event.request.ip.clone(),
            reason,
            user_id: event.actor.user_id.clone(),
            api_key_id: event.actor.api_key_id.clone(),
        }
    }
}

/// An open window of one key.
struct OpenWindow {
    opened: Instant,
    /// Refusals after the first (which was written at once).
    repeats: u64,
    first_ms: i64,
    last_ms: i64,
    /// The first event, the template of the summary.
    first: Event,
}

/// The tally of refusals that found the map full.
struct Overflow {
    opened: Instant,
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

#[derive(Default)]
struct Windows {
    open: HashMap<DenialKey, OpenWindow>,
    overflow: Option<Overflow>,
}

/// What the caller does with a refusal.
#[derive(Debug)]
pub enum Admission {
    /// Write these events before answering: the refusal itself (last),
    /// preceded by the summary of an expired window of the same key not yet
    /// taken by housekeeping.
    Record(Vec<Event>),
    /// Counted in an open window; nothing to write now.
    Counted,
    /// The map is full: counted in the overflow tally.
    Overflow,
}

/// The coalescer (one per process, in `AppState`).
pub struct Denials {
    window: Duration,
    max_keys: usize,
    windows: Mutex<Windows>,
}

impl Default for Denials {
    fn default() -> Self {
        Self::new(WINDOW, MAX_KEYS)
    }
}

impl Denials {
    /// A coalescer with its window length and key bound.
    pub fn new(window: Duration, max_keys: usize) -> Self {
        Self { window, max_keys, windows: Mutex::new(Windows::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one refusal (`event`, an `access_denied` event with the
    /// guard's `reason`) seen at `now` / `now_ms`.
    pub fn admit(&self, reason: &'static str, event: Event, now: Instant, now_ms: i64) -> Admission {
        let key = DenialKey::of(reason, &event);
        let mut windows = self.lock();
        let mut write = Vec::with_capacity(1);
        if let Some(open) = windows.open.get_mut(&key) {
            if now.saturating_duration_since(open.opened) < self.window {
                open.repeats += 1;
                open.last_ms = now_ms;
                return Admission::Counted;
            }
            if let Some(closed) = windows.open.remove(&key) {
                write.extend(self.summary(closed));
            }
        } else if windows.open.len() >= self.max_keys {
            let overflow = windows.overflow.get_or_insert(Overflow {
                opened: now,
                count: 0,
                first_ms: now_ms,
                last_ms: now_ms,
            });
            overflow.count += 1;
            overflow.last_ms = now_ms;
            return Admission::Overflow;
        }
        windows.open.insert(
            key,
            OpenWindow { opened: now, repeats: 0, first_ms: now_ms, last_ms: now_ms, first: event.clone() },
        );
        write.push(event);
        Admission::Record(write)
    }

    /// Forgets the open window of a refusal whose first event could not be
    /// written, so that the next one is written (and not only counted).
    pub fn forget(&self, reason: &'static str, event: &Event) {
        let key = DenialKey::of(reason, event);
        let mut windows = self.lock();
        if windows.open.get(&key).is_some_and(|w| w.repeats == 0) {
            windows.open.remove(&key);
        }
    }

    /// Closes the windows that have expired at `now` and returns the
    /// summary events to write (windows without repeats close silently).
    pub fn take_due(&self, now: Instant) -> Vec<Event> {
        self.take(|opened| now.saturating_duration_since(opened) >= self.window)
    }

    /// Closes every window (at shutdown) and returns the summaries.
    pub fn take_all(&self) -> Vec<Event> {
        self.take(|_| true)
    }

    /// Keys with an open window (for tests and diagnostics).
    pub fn open_windows(&self) -> usize {
        self.lock().open.len()
    }

    fn take(&self, due: impl Fn(Instant) -> bool) -> Vec<Event> {
        let mut windows = self.lock();
        let closing: Vec<DenialKey> =
            windows.open.iter().filter(|(_, w)| due(w.opened)).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::new();
        for key in closing {
            if let Some(closed) = windows.open.remove(&key) {
                out.extend(self.summary(closed));
            }
        }
        if windows.overflow.as_ref().is_some_and(|o| due(o.opened))
            && let Some(o) = windows.overflow.take()
        {
            out.push(self.overflow_summary(o));
        }
        out
    }

    /// The summary of a closed window, if it counted any repeats.
    fn summary(&self, closed: OpenWindow) -> Option<Event> {
        if closed.repeats == 0 {
            return None;
        }
        let mut event = closed.first;
        event.request.request_id = None;
        Some(self.with_tally(event, closed.repeats, closed.first_ms, closed.last_ms))
    }

    fn overflow_summary(&self, o: Overflow) -> Event {
        let event = Event::new(EventType::AccessDenied, Actor::default(), RequestFacts::default())
            .with("reason", OVERFLOW_REASON);
        self.with_tally(event, o.count, o.first_ms, o.last_ms)
    }

    fn with_tally(&self, event: Event, count: u64, first_ms: i64, last_ms: i64) -> Event {
        event
            .with("count", count)
            .with("first", format_millis(first_ms))
            .with("last", format_millis(last_ms))
            .with("window_seconds", Value::from(self.window.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(ip: &str, reason: &'static str) -> Event {
        let request = RequestFacts {
            ip: Some(ip.into()),
            request_id: Some("r".into()),
            path: Some("/user".into()),
            msisdn: None,
        };
        Event::new(EventType::AccessDenied, Actor::default(), request)
            .with("reason", reason)
            .with("status", 401)
    }

    fn written(a: Admission) -> usize {
        match a {
            Admission::Record(events) => events.len(),
            _ => 0,
        }
    }

    #[test]
    fn the_first_refusal_is_written_and_repeats_become_one_summary() {
        let d = Denials::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert_eq!(written(d.admit("missing_api_key", refusal("10.0.0.1", "missing_api_key"), t0, 1_000)), 1);
        for i in 0..99 {
            let a = d.admit("missing_api_key", refusal("10.0.0.1", "missing_api_key"), t0, 2_000 + i);
            assert!(matches!(a, Admission::Counted));
        }
        assert!(d.take_due(t0 + Duration::from_secs(59)).is_empty(), "the window is still open");
        let summaries = d.take_due(t0 + Duration::from_secs(60));
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0];
        assert_eq!(s.detail["count"], 99);
        assert_eq!(s.detail["reason"], "missing_api_key");
        assert_eq!(s.detail["status"], 401);
        assert_eq!(s.detail["first"], format_millis(1_000));
        assert_eq!(s.detail["last"], format_millis(2_098));
        assert_eq!(s.request.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(s.request.request_id, None, "a summary stands for many requests");
        assert_eq!(d.open_windows(), 0);
    }

    #[test]
    fn a_window_without_repeats_closes_silently_and_the_next_refusal_is_first_again() {
        let d = Denials::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert_eq!(written(d.admit("role", refusal("10.0.0.1", "role"), t0, 0)), 1);
        assert!(d.take_due(t0 + Duration::from_secs(61)).is_empty());
        assert_eq!(written(d.admit("role", refusal("10.0.0.1", "role"), t0 + Duration::from_secs(62), 0)), 1);
    }

    #[test]
    fn an_expired_window_not_yet_taken_is_summarised_by_the_next_refusal() {
        let d = Denials::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        d.admit("role", refusal("10.0.0.1", "role"), t0, 0);
        d.admit("role", refusal("10.0.0.1", "role"), t0, 0);
        let later = d.admit("role", refusal("10.0.0.1", "role"), t0 + Duration::from_secs(60), 0);
        let Admission::Record(events) = later else { panic!("{later:?}") };
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].detail["count"], 1);
        assert!(!events[1].detail.contains_key("count"));
    }

    #[test]
    fn ips_reasons_and_identities_are_distinct_keys() {
        let d = Denials::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert_eq!(written(d.admit("role", refusal("10.0.0.1", "role"), t0, 0)), 1);
        assert_eq!(written(d.admit("role", refusal("10.0.0.2", "role"), t0, 0)), 1);
        assert_eq!(written(d.admit("csrf", refusal("10.0.0.1", "csrf"), t0, 0)), 1);
        let mut as_bob = refusal("10.0.0.1", "role");
        as_bob.actor.user_id = Some("bob".into());
        assert_eq!(written(d.admit("role", as_bob, t0, 0)), 1);
        assert_eq!(d.open_windows(), 4);
    }

    #[test]
    fn the_map_is_bounded_and_the_rest_is_one_overflow_summary() {
        let d = Denials::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(written(d.admit("x", refusal(&format!("10.0.0.{i}"), "x"), t0, 0)), 1);
        }
        for i in 3..1003 {
            let a = d.admit("x", refusal(&format!("10.0.{}.{}", i / 256, i % 256), "x"), t0, 0);
            assert!(matches!(a, Admission::Overflow));
        }
        assert_eq!(d.open_windows(), 3, "rotating addresses does not grow the map");
        let all = d.take_all();
        assert_eq!(all.len(), 1, "windows without repeats close silently, the overflow does not");
        assert_eq!(all[0].detail["reason"], OVERFLOW_REASON);
        assert_eq!(all[0].detail["count"], 1000);
        assert_eq!(all[0].request.ip, None);
    }

    #[test]
    fn shutdown_takes_open_windows_with_their_counts() {
        let d = Denials::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        for _ in 0..5 {
            d.admit("x", refusal("10.0.0.1", "x"), t0, 0);
        }
        let all = d.take_all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].detail["count"], 4);
    }

    #[test]
    fn a_first_event_that_could_not_be_written_is_forgotten() {
        let d = Denials::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        d.admit("x", refusal("10.0.0.1", "x"), t0, 0);
        d.forget("x", &refusal("10.0.0.1", "x"));
        assert_eq!(written(d.admit("x", refusal("10.0.0.1", "x"), t0, 0)), 1);
    }
}
