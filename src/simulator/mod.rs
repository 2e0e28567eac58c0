//! The eSight simulator: a real HTTP server (hyper on tokio) that plays
//! eSight's side of the contract, so that tests, the demo and testers never
//! need the real platform.
//!
//! eSight endpoints (fixed paths):
//! - `GET /token` with HTTP Basic (`username`/`password`) →
//!   `{"access_token", "token_type": "Bearer", "expires_in"}`;
//! - `GET /sites`, `GET /meters` with `Authorization: Bearer <token>` → the
//!   catalog (`[{"SiteCode"}]`, `[{"MeterCode"}]`); unknown or expired token → `401`;
//! - `POST /consumption` with HTTP Basic (`post_username`/`post_password`) →
//!   `202 {"accepted": true, "seq": N}`, or the status a fault dictates.
//!
//! A capacity ([`Capacity`], `capacity.rs`) bounds the consumption posts
//! served at once; beyond it posts queue (FIFO), and past the queue bound
//! they get `429` with `Retry-After: 1`. Unlimited by default; set at start,
//! through [`CapacityHandle`] or `PUT /_sim/capacity`.
//!
//! Faults ([`Faults`]) are set at start, from Rust through [`FaultsHandle`],
//! or over the control API under `/_sim/` (see `control.rs`). Accepted
//! messages can be answered later with an error report posted to the
//! appliance (`reports.rs`), from a dedicated std thread using `ureq`.
//!
//! The same code runs in-process ([`EsightSim::start`]) and as
//! `energyload esight-sim` ([`cli::run`]).

mod capacity;
mod catalog;
pub mod cli;
mod control;
mod faults;
mod outage;
mod records;
mod reports;
mod routes;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use capacity::{Capacity, CapacityHandle, CapacityView, MAX_CONCURRENT, MAX_QUEUE};
pub use catalog::Catalog;
pub use faults::{Faults, FaultsHandle, FaultsView};
pub use outage::{Outage, OutageMode};
pub use records::{ConsumptionStats, ReceivedMessage, ReportRecord, SimStats, TokenStats};

use crate::config::Secret;
use records::Records;

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/token";
/// Path of the site catalog.
pub const SITES_PATH: &str = "/sites";
/// Path of the meter catalog.
pub const METERS_PATH: &str = "/meters";
/// Path that receives consumption messages.
pub const CONSUMPTION_PATH: &str = "/consumption";

/// Everything the simulator needs to start.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Basic-auth user for `GET /token`.
    pub username: String,
    /// Basic-auth password for `GET /token`.
    pub password: Secret,
    /// Basic-auth user for `POST /consumption`.
    pub post_username: String,
    /// Basic-auth password for `POST /consumption`.
    pub post_password: Secret,
    /// Lifetime of issued access tokens (`expires_in` is its whole seconds).
    pub token_ttl: std::time::Duration,
    /// The site and meter catalog served.
    pub catalog: Catalog,
    /// Faults in force from the start, and restored by a reset.
    pub faults: Faults,
    /// Consumption posts served at once and allowed to wait, from the start
    /// and restored by a reset; `None` = unlimited.
    pub capacity: Option<Capacity>,
    /// Where error reports go; required when `faults.report_fraction > 0`.
    pub appliance: Option<ApplianceLink>,
    /// How many received consumption posts are kept (oldest dropped first).
    pub max_received: usize,
    /// Largest consumption body accepted; bigger ones get `413`.
    pub max_body_bytes: u64,
}

impl Default for SimConfig {
    /// Loopback on a free port, the sample catalog, no faults, no appliance,
    /// and the documented default credentials.
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            username: DEFAULT_USERNAME.to_string(),
            password: Secret::new(DEFAULT_PASSWORD),
            post_username: DEFAULT_POST_USERNAME.to_string(),
            post_password: Secret::new(DEFAULT_POST_PASSWORD),
            token_ttl: std::time::Duration::from_secs(3600),
            catalog: Catalog::sample(),
            faults: Faults::default(),
            capacity: None,
            appliance: None,
            max_received: 10_000,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Default Basic-auth user for `GET /token`.
pub const DEFAULT_USERNAME: &str = "esight-sim";
/// Default Basic-auth password for `GET /token`.
pub const DEFAULT_PASSWORD: &str = "esight-sim-token-pass";
/// Default Basic-auth user for `POST /consumption`.
pub const DEFAULT_POST_USERNAME: &str = "esight-sim-post";
/// Default Basic-auth password for `POST /consumption`.
pub const DEFAULT_POST_PASSWORD: &str = "esight-sim-post-pass";

/// How the simulator reaches the appliance to post error reports: it logs in
/// as an `esight` user, then posts `errorjson`.
#[derive(Clone, Debug)]
pub struct ApplianceLink {
    /// The appliance's base URL, e.g. `http://127.0.0.1:8080` (no trailing `/`
    /// needed).
    pub base_url: String,
    /// API key sent as `X-API-Key`.
    pub api_key: Secret,
    /// Username of an account with role `esight`.
    pub username: String,
    /// Its password.
    pub password: Secret,
}

/// Why the simulator could not start or a setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A catalog file could not be read or has the wrong shape.
    #[error("catalog {what}: {reason}")]
    Catalog {
        /// Which list or file.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A fault setting is out of range.
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    /// A capacity setting is out of range.
    #[error("invalid capacity: {0}")]
    InvalidCapacity(String),
    /// Error reports were asked for but no appliance is configured.
    #[error("error reports need the appliance's URL, API key, username and password")]
    NoAppliance,
    /// A secret file could not be read or is empty.
    #[error("cannot read the secret in {path}: {reason}")]
    SecretFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The error-report thread could not be started.
    #[error("cannot start the error-report thread: {0}")]
    ReporterThread(std::io::Error),
}

/// The Basic-auth passwords accepted now: `SimConfig`'s at start, replaced
/// by [`EsightSim::set_passwords`] (a credential rotation on eSight's side).
#[derive(Clone)]
pub(crate) struct Passwords {
    pub(crate) token: Secret,
    pub(crate) post: Secret,
}

/// State shared by the accept loop, the request handlers and the handle.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) passwords: Mutex<Passwords>,
    pub(crate) faults: FaultsHandle,
    pub(crate) capacity: CapacityHandle,
    pub(crate) catalog: Mutex<Catalog>,
    pub(crate) records: Arc<Mutex<Records>>,
    pub(crate) reporter: Option<reports::Reporter>,
}

impl Shared {
    /// The records, even if a thread panicked while holding them.
    pub(crate) fn records(&self) -> MutexGuard<'_, Records> {
        lock(&self.records)
    }

    /// The passwords accepted now.
    pub(crate) fn passwords(&self) -> Passwords {
        lock(&self.passwords).clone()
    }

    /// The catalog currently served.
    pub(crate) fn catalog(&self) -> Catalog {
        lock(&self.catalog).clone()
    }

    /// The counters, with the capacity gate's high-water marks.
    pub(crate) fn stats(&self) -> SimStats {
        let marks = self.capacity.marks();
        let mut stats = self.records().stats();
        stats.max_in_service = marks.max_in_service;
        stats.max_concurrent_posts = marks.max_concurrent_posts;
        stats
    }

    /// Forgets received messages, reports, counters and tokens, and restores
    /// the faults and the capacity given at start.
    pub(crate) fn reset(&self) {
        self.records().clear();
        self.faults.restore_initial();
        self.capacity.restore_initial();
    }
}

/// Locks a mutex, recovering the data if a holder panicked (the simulator's
/// records stay usable for the test that wants to inspect them).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running simulator. Dropping it stops the server (without waiting);
/// [`EsightSim::shutdown`] stops it and waits.
pub struct EsightSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EsightSim {
    /// Binds `cfg.listen` and starts serving on the current tokio runtime.
    pub async fn start(cfg: SimConfig) -> Result<Self, SimError> {
        if cfg.faults.report_fraction > 0.0 && cfg.appliance.is_none() {
            return Err(SimError::NoAppliance);
        }
        cfg.faults.validate()?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| SimError::Bind { addr: cfg.listen, source })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind { addr: cfg.listen, source })?;
        let records = Arc::new(Mutex::new(Records::new(cfg.max_received)));
        let reporter = match &cfg.appliance {
            Some(link) => Some(reports::Reporter::spawn(link.clone(), records.clone())?),
            None => None,
        };
        let shared = Arc::new(Shared {
            faults: FaultsHandle::new(cfg.faults.clone(), cfg.appliance.is_some()),
            capacity: CapacityHandle::new(cfg.capacity),
            catalog: Mutex::new(cfg.catalog.clone()),
            passwords: Mutex::new(Passwords { token: cfg.password.clone(), post: cfg.post_password.clone() }),
            config: cfg,
            records,
            reporter,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, addr, shared.clone(), stopped));
        tracing::info!(%addr, "eSight simulator listening");
        Ok(Self { addr, shared, stop, task: Some(task) })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, with a loopback host when bound to `0.0.0.0`/`::`.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The appliance's `esight.token_url`.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base_url())
    }

    /// The appliance's `esight.sites_url`.
    pub fn sites_url(&self) -> String {
        format!("{}{SITES_PATH}", self.base_url())
    }

    /// The appliance's `esight.meters_url`.
    pub fn meters_url(&self) -> String {
        format!("{}{METERS_PATH}", self.base_url())
    }

    /// The appliance's `esight.consumption_url`.
    pub fn consumption_url(&self) -> String {
        format!("{}{CONSUMPTION_PATH}", self.base_url())
    }

    /// The configuration the simulator runs with (credentials for the
    /// appliance's `[esight]` section).
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The fault controls.
    pub fn faults(&self) -> &FaultsHandle {
        &self.shared.faults
    }

    /// The capacity controls (`None` = unlimited) and the load now.
    pub fn capacity(&self) -> &CapacityHandle {
        &self.shared.capacity
    }

    /// Every kept consumption post, oldest first, faulted ones included.
    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.shared.records().received_since(0, usize::MAX)
    }

    /// The counters.
    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// Error reports sent (or given up on), oldest first.
    pub fn reports(&self) -> Vec<ReportRecord> {
        self.shared.records().reports()
    }

    /// Makes every issued access token invalid at once, as if it expired.
    pub fn expire_tokens(&self) {
        self.shared.records().expire_tokens();
    }

    /// Accepts only these passwords (token, consumption) from now on, as
    /// eSight does after a credential rotation; issued tokens stay valid.
    pub fn set_passwords(&self, token: Secret, post: Secret) {
        *lock(&self.shared.passwords) = Passwords { token, post };
    }

    /// Replaces the catalog served from now on.
    pub fn set_catalog(&self, catalog: Catalog) {
        *lock(&self.shared.catalog) = catalog;
    }

    /// Same as `POST /_sim/reset`.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting, drops open connections and waits for the server
    /// task to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EsightSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
