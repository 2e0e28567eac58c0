//! Fault injection: what the simulator does wrong, on purpose.
//!
//! [`Faults`] is the whole setting, as JSON for `POST /_sim/faults` and as a
//! Rust value for [`FaultsHandle::set`]. Setting faults replaces the previous
//! ones entirely (fields left out mean "no such fault") and restarts the
//! outage clock. Status faults (`sequence`, `error_rates`) apply to
//! `POST /consumption` only; `latency_ms` and outages apply to every eSight
//! endpoint; the `/_sim/` control API is never delayed and answers during a
//! `hang` outage (a `refuse` outage closes the port, so it is unreachable then).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::outage::OutagePhase;
use super::{Outage, OutageMode, SimError, lock};

/// The fault setting.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability per status code for each consumption post, e.g.
    /// `{"503": 0.1}`; the probabilities add up to at most 1.
    pub error_rates: BTreeMap<u16, f64>,
    /// Statuses for the next consumption posts, in order, before
    /// `error_rates` apply again, e.g. `[503, 503, 200]`. A 2xx status
    /// accepts the message with that status.
    pub sequence: Vec<u16>,
    /// Added delay before every eSight endpoint answers.
    pub latency_ms: u64,
    /// `Retry-After` seconds sent with every injected `429` and `503`.
    pub retry_after_secs: Option<u64>,
    /// An outage window, possibly repeating.
    pub outage: Option<Outage>,
    /// Fraction (0–1) of accepted, first-seen messages that get an error
    /// report posted to the appliance.
    pub report_fraction: f64,
    /// Delay between accepting a message and posting its error report.
    pub report_delay_ms: u64,
}

/// outage is on right now (`GET /_sim/faults`).
#[derive(Clone, Debug, Serialize)]
pub struct FaultsView {
    /// The setting as last set.
    pub faults: Faults,
    /// The part of `faults.sequence` not yet used.
    pub sequence_remaining: Vec<u16>,
    /// The outage mode in force now, if any.
    pub outage_now: Option<OutageMode>,
}

impl Faults {
    /// Checks ranges: status codes 200–599, probabilities in 0–1 adding up
    /// to at most 1, a repeating outage longer than zero and shorter than its
    /// period.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::InvalidFaults(m));
        for &status in self.error_rates.keys().chain(self.sequence.iter()) {
            if !(200..=599).contains(&status) {
                return bad(format!("status {status} is not between 200 and 599"));
            }
        }
        if self.error_rates.values().any(|p| !(0.0..=1.0).contains(p)) {
            return bad("every error rate must be between 0 and 1".into());
        }
        if self.error_rates.values().sum::<f64>() > 1.0 + 1e-9 {
            return bad("the error rates add up to more than 1".into());
        }
        if !(0.0..=1.0).contains(&self.report_fraction) {
            return bad("report_fraction must be between 0 and 1".into());
        }
        if let Some(o) = &self.outage {
            if o.duration_ms == 0 {
                return bad("an outage needs duration_ms > 0".into());
            }
            if o.every_ms.is_some_and(|every| every <= o.duration_ms) {
                return bad("outage every_ms must be longer than duration_ms".into());
            }
        }
        Ok(())
    }
}

/// The faults in force and the sequence still to play.
struct Active {
    faults: Faults,
    set_at: Instant,
    sequence: VecDeque<u16>,
}

/// Shared, thread-safe access to the faults; cheap to clone. Changes wake
/// the accept loop (outages) at once.
#[derive(Clone)]
pub struct FaultsHandle {
    inner: Arc<Inner>,
}

struct Inner {
    active: Mutex<Active>,
    initial: Faults,
    appliance_configured: bool,
    changed: watch::Sender<u64>,
}

impl FaultsHandle {
    pub(crate) fn new(initial: Faults, appliance_configured: bool) -> Self {
        let (changed, _) = watch::channel(0);
        let active = Active {
            sequence: initial.sequence.iter().copied().collect(),
            faults: initial.clone(),
            set_at: Instant::now(),
        };
        Self { inner: Arc::new(Inner { active: Mutex::new(active), initial, appliance_configured, changed }) }
    }

    /// Replaces the faults (after validating them) and restarts the outage
    /// clock. Error reports need an appliance configured at start.
    pub fn set(&self, faults: Faults) -> Result<(), SimError> {
        faults.validate()?;
        if faults.report_fraction > 0.0 && !self.inner.appliance_configured {
            return Err(SimError::NoAppliance);
        }
        {
            let mut active = lock(&self.inner.active);
            active.sequence = faults.sequence.iter().copied().collect();
            active.faults = faults;
            active.set_at = Instant::now();
        }
        self.inner.changed.send_modify(|generation| *generation += 1);
        Ok(())
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.set(Faults::default()).expect("no faults is always valid");
    }

    /// Restores the faults given at start (with a fresh outage clock).
    pub(crate) fn restore_initial(&self) {
        self.set(self.inner.initial.clone()).expect("the initial faults were validated at start");
    }

    /// The faults as last set.
    pub fn get(&self) -> Faults {
        lock(&self.inner.active).faults.clone()
    }

    /// The faults, what is left of the sequence, and the outage now.
    pub fn view(&self) -> FaultsView {
        let active = lock(&self.inner.active);
        FaultsView {
            faults: active.faults.clone(),
            sequence_remaining: active.sequence.iter().copied().collect(),
            outage_now: phase_of(&active, Instant::now()).mode,
        }
    }

    /// The status the next consumption post gets: the next in the sequence,
    /// else one drawn from `error_rates`, else `202`.
    pub(crate) fn next_consumption_status(&self) -> u16 {
        let mut active = lock(&self.inner.active);
        if let Some(status) = active.sequence.pop_front() {
            return status;
        }
        let draw: f64 = rand::random();
        let mut cumulative = 0.0;
        for (&status, &rate) in &active.faults.error_rates {
            cumulative += rate;
            if draw < cumulative {
                return status;
            }
        }
        202
    }

    /// The `Retry-After` value for injected `429`/`503` answers.
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        lock(&self.inner.active).faults.retry_after_secs
    }

    /// The added latency.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(lock(&self.inner.active).faults.latency_ms)
    }

    /// The report delay if this accepted message is drawn for an error report.
    pub(crate) fn draw_report(&self) -> Option<Duration> {
        let active = lock(&self.inner.active);
        let fraction = active.faults.report_fraction;
        (fraction > 0.0 && rand::random::<f64>() < fraction)
            .then(|| Duration::from_millis(active.faults.report_delay_ms))
    }

    /// The outage phase now.
    pub(crate) fn outage_phase(&self) -> OutagePhase {
        phase_of(&lock(&self.inner.active), Instant::now())
    }

    /// A receiver that changes whenever the faults are set.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

fn phase_of(active: &Active, now: Instant) -> OutagePhase {
    match &active.faults.outage {
        Some(outage) => outage.phase(active.set_at, now),
        None => OutagePhase { mode: None, until: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outage(starts_in_ms: u64, duration_ms: u64, every_ms: Option<u64>) -> Outage {
        Outage { mode: OutageMode::Hang, starts_in_ms, duration_ms, every_ms }
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let mut f = Faults::default();
        f.error_rates.insert(503, 0.7);
        f.error_rates.insert(500, 0.4);
        assert!(f.validate().is_err());
        let f = Faults { sequence: vec![99], ..Faults::default() };
        assert!(f.validate().is_err());
        let f = Faults { outage: Some(outage(0, 100, Some(100))), ..Faults::default() };
        assert!(f.validate().is_err());
        let handle = FaultsHandle::new(Faults::default(), false);
        let reports = Faults { report_fraction: 0.5, ..Faults::default() };
        assert!(matches!(handle.set(reports), Err(SimError::NoAppliance)));
    }

    #[test]
    fn the_sequence_comes_first_then_the_rates() {
        let handle = FaultsHandle::new(Faults::default(), false);
        let mut f = Faults { sequence: vec![503, 200], ..Faults::default() };
        f.error_rates.insert(500, 1.0);
        handle.set(f).unwrap();
        assert_eq!(handle.view().sequence_remaining, vec![503, 200]);
        let got: Vec<u16> = (0..4).map(|_| handle.next_consumption_status()).collect();
        assert_eq!(got, vec![503, 200, 500, 500]);
        handle.clear();
        assert_eq!(handle.next_consumption_status(), 202);
    }

    #[test]
    fn faults_read_from_json_with_string_status_keys() {
        let f: Faults = serde_json::from_str(
            r#"{"error_rates": {"503": 0.1}, "outage": {"mode": "refuse", "duration_ms": 500}}"#,
        )
        .unwrap();
        assert_eq!(f.error_rates.get(&503), Some(&0.1));
        assert_eq!(f.outage.unwrap().mode, OutageMode::Refuse);
        assert!(serde_json::from_str::<Faults>(r#"{"latency": 5}"#).is_err());
    }
}
