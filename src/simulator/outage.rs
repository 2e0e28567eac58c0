//! Outage windows: when eSight is down and how (`refuse` or `hang`),
//! possibly repeating. Pure time arithmetic; the accept loop and the request
//! handlers act on the phase it computes.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A window during which eSight is down: from `starts_in_ms` after the
/// faults are set, for `duration_ms`, repeating every `every_ms` if given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// How eSight is down.
    pub mode: OutageMode,
    /// Delay before the first window.
    #[serde(default)]
    pub starts_in_ms: u64,
    /// Length of each window.
    pub duration_ms: u64,
    /// Period of the windows; must exceed `duration_ms`. `None`: one window.
    #[serde(default)]
    pub every_ms: Option<u64>,
}

/// How an outage looks to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutageMode {
    /// The port is closed: connections are refused and open ones dropped.
    Refuse,
    /// Connections are accepted but no eSight request is answered until the
    /// window ends (then it is answered normally).
    Hang,
}

/// What outages mean at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutagePhase {
    /// The mode in force, or `None`.
    pub mode: Option<OutageMode>,
    /// When that changes next, if ever.
    pub until: Option<Instant>,
}
impl Outage {
    /// The phase at `now` for an outage whose clock started at `set_at`.
    pub(crate) fn phase(&self, set_at: Instant, now: Instant) -> OutagePhase {
        let first = set_at + Duration::from_millis(self.starts_in_ms);
        let length = Duration::from_millis(self.duration_ms);
        if now < first {
            return OutagePhase { mode: None, until: Some(first) };
        }
        let since_first = now - first;
        let Some(every_ms) = self.every_ms else {
            return if since_first < length {
                OutagePhase { mode: Some(self.mode), until: Some(first + length) }
            } else {
                OutagePhase { mode: None, until: None }
            };
        };
        let every = Duration::from_millis(every_ms);
        let periods = since_first.as_nanos() / every.as_nanos();
        let window_start = first + every * u32::try_from(periods).unwrap_or(u32::MAX);
        let into_window = now - window_start;
        if into_window < length {
            OutagePhase { mode: Some(self.mode), until: Some(window_start + length) }
        } else {
            OutagePhase { mode: None, until: Some(window_start + every) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outage(starts_in_ms: u64, duration_ms: u64, every_ms: Option<u64>) -> Outage {
        Outage { mode: OutageMode::Hang, starts_in_ms, duration_ms, every_ms }
    }

    #[test]
    fn a_single_window_starts_and_ends() {
        let t0 = Instant::now();
        let o = outage(100, 50, None);
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(o.phase(t0, ms(10)), OutagePhase { mode: None, until: Some(ms(100)) });
        assert_eq!(o.phase(t0, ms(120)), OutagePhase { mode: Some(OutageMode::Hang), until: Some(ms(150)) });
        assert_eq!(o.phase(t0, ms(150)), OutagePhase { mode: None, until: None });
    }

    #[test]
    fn repeating_windows_follow_their_period() {
        let t0 = Instant::now();
        let o = outage(0, 10, Some(100));
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(o.phase(t0, ms(205)).mode, Some(OutageMode::Hang));
        assert_eq!(o.phase(t0, ms(205)).until, Some(ms(210)));
        assert_eq!(o.phase(t0, ms(250)), OutagePhase { mode: None, until: Some(ms(300)) });
    }
}
