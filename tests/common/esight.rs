//! The eSight simulator for integration tests: an in-process `EsightSim` on
//! its own tokio runtime (so blocking tests can drive it), wiring of its
//! URLs and credentials into an appliance configuration, and the polling
//! helpers `wait_until` / `wait_for` (never fixed sleeps where a condition
//! exists).

use std::time::{Duration, Instant};

use energyload::config::{Config, Duration as CfgDuration, Secret};
use energyload::simulator::{EsightSim, Faults, FaultsHandle, ReceivedMessage, SimConfig, SimStats};

/// A running simulator, stopped when dropped.
pub struct Sim {
    runtime: Option<tokio::runtime::Runtime>,
    sim: Option<EsightSim>,
}

/// Starts a simulator with the default configuration (sample catalog, no
/// faults, documented credentials) on a free loopback port.
pub fn spawn_simulator() -> Sim {
    spawn_simulator_with(SimConfig::default())
}

/// Starts a simulator with `cfg`.
pub fn spawn_simulator_with(cfg: SimConfig) -> Sim {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sim = runtime.block_on(EsightSim::start(cfg)).expect("the simulator starts");
    Sim { runtime: Some(runtime), sim: Some(sim) }
}

impl Sim {
    /// The simulator itself.
    pub fn sim(&self) -> &EsightSim {
        self.sim.as_ref().unwrap()
    }

    /// The fault controls.
    pub fn faults(&self) -> &FaultsHandle {
        self.sim().faults()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        self.faults().set(faults).expect("valid faults");
    }

    /// Every consumption post received, oldest first.
    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.sim().received()
    }

    /// Consumption posts whose `Idempotency-Key` is `id`.
    pub fn received_for(&self, id: &str) -> Vec<ReceivedMessage> {
        self.received().into_iter().filter(|m| m.idempotency_key.as_deref() == Some(id)).collect()
    }

    /// The counters.
    pub fn stats(&self) -> SimStats {
        self.sim().stats()
    }

    /// Requests seen on one endpoint (`token`, `sites`, `meters`, `consumption`).
    pub fn requests(&self, endpoint: &str) -> u64 {
        self.stats().requests.get(endpoint).copied().unwrap_or(0)
    }

    /// Points `config.esight` at this simulator with its credentials, and
    /// makes retries fast (50 ms → 500 ms).
    pub fn configure(&self, config: &mut Config) {
        let s = self.sim();
        let cfg = s.config();
        let e = &mut config.esight;
        e.token_url = Some(s.token_url());
        e.sites_url = Some(s.sites_url());
        e.meters_url = Some(s.meters_url());
        e.consumption_url = Some(s.consumption_url());
        e.username = Some(Secret::new(cfg.username.clone()));
        e.password = Some(Secret::new(cfg.password.expose()));
        e.post_username = Some(Secret::new(cfg.post_username.clone()));
        e.post_password = Some(Secret::new(cfg.post_password.expose()));
        e.timeout = CfgDuration::from_secs(5);
        config.delivery.backoff_initial = CfgDuration::from_millis(50);
        config.delivery.backoff_max = CfgDuration::from_millis(500);
    }

    /// The same as TOML sections for a child server's config file.
    pub fn config_toml(&self) -> String {
        let s = self.sim();
        let cfg = s.config();
        format!(
            "[esight]\ntoken_url = {:?}\nsites_url = {:?}\nmeters_url = {:?}\nconsumption_url = {:?}\n\
             username = {:?}\npassword = {:?}\npost_username = {:?}\npost_password = {:?}\ntimeout = \"5s\"\n\n\
             [delivery]\nbackoff_initial = \"50ms\"\nbackoff_max = \"500ms\"\n",
            s.token_url(),
            s.sites_url(),
            s.meters_url(),
            s.consumption_url(),
            cfg.username,
            cfg.password.expose(),
            cfg.post_username,
            cfg.post_password.expose(),
        )
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let (Some(rt), Some(sim)) = (self.runtime.take(), self.sim.take()) {
            rt.block_on(sim.shutdown());
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// An app (with an admin session) delivering to `sim`, fast retries.
pub fn app_for(sim: &Sim, customize: impl FnOnce(&mut Config)) -> super::session::Session {
    super::session::Session::new(super::spawn_app_with(|c| {
        sim.configure(c);
        customize(c);
    }))
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || cond().then_some(()));
}

/// Polls `f` every 20 ms until it gives a value; panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
