//! What the operator needs to know about eSight's reachability beyond
//! "reachable or not": since when calls fail, the last error and the last
//! success. Kept by delivery next to the circuit breaker (which decides when
//! eSight counts as down); read by the attention endpoint. No I/O here.

use std::sync::Mutex;

/// The remembered facts, as Unix ms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReachabilityFacts {
    /// The first failure of the current run of failures (`None` after a success).
    pub failing_since: Option<i64>,
    /// The last failure's description (kept after a success).
    pub last_error: Option<String>,
    /// When the last failure happened.
    pub last_error_at: Option<i64>,
    /// When eSight last answered a call (any answer that is not an outage).
    pub last_success_at: Option<i64>,
}

/// The tracker shared by the delivery threads.
#[derive(Debug, Default)]
pub struct Reachability {
    facts: Mutex<ReachabilityFacts>,
}

impl Reachability {
    /// eSight answered at `now`: the run of failures, if any, is over.
    pub fn answered(&self, now: i64) {
        let mut f = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        f.failing_since = None;
        f.last_success_at = Some(now);
    }

    /// A call failed at `now` (transport error, timeout, `5xx`) because of `why`.
    pub fn failed(&self, now: i64, why: impl Into<String>) {
        let mut f = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        f.failing_since.get_or_insert(now);
        f.last_error = Some(why.into());
        f.last_error_at = Some(now);
    }

    /// A copy of the facts now.
    pub fn facts(&self) -> ReachabilityFacts {
        self.facts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_keeps_its_start_and_the_latest_error() {
        let r = Reachability::default();
        r.answered(100);
        r.failed(200, "connection refused");
        r.failed(300, "eSight answered 503");
        let f = r.facts();
        assert_eq!(f.failing_since, Some(200));
        assert_eq!(f.last_error.as_deref(), Some("eSight answered 503"));
        assert_eq!(f.last_error_at, Some(300));
        assert_eq!(f.last_success_at, Some(100));
    }

    #[test]
    fn a_success_ends_the_run_but_keeps_the_last_error() {
        let r = Reachability::default();
        r.failed(200, "timed out");
        r.answered(400);
        r.failed(500, "reset");
        let f = r.facts();
        assert_eq!(f.failing_since, Some(500), "a new run starts at its own first failure");
        assert_eq!(f.last_success_at, Some(400));
    }

    #[test]
    fn nothing_known_before_the_first_call() {
        assert_eq!(Reachability::default().facts(), ReachabilityFacts::default());
    }
}
