//! Background delivery to eSight, many posts outstanding on two threads:
//!
//! - `delivery` ([`dispatcher`]): claims due messages with a lease, checks
//!   them against the catalog (blocking `ureq` calls for token and catalog),
//!   hands them to the posting thread, records the answers in batches;
//! - `delivery-io` ([`poster`]): a single-threaded tokio runtime with hyper's
//!   pooled client, one task per outstanding post.
//!
//! How many posts are outstanding follows eSight's latency and answers
//! ([`limiter`]: adaptive, at most `delivery.max_in_flight`); the circuit
//! breaker ([`backoff`]) stops delivery as a whole during an outage and
//! probes every few seconds. On start, leases left by a crash are released,
//! so nothing stays `delivering`. Pausing (persisted) stops claiming; ingest
//! goes on.

mod attempt;
mod backoff;
mod catalog;
mod client;
mod dispatcher;
mod limiter;
mod poster;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;

use crate::clock::now_millis;
use crate::config::{Config, Synchronous};
use crate::esight::reachability::{Reachability, ReachabilityFacts};
use crate::metrics::Metrics;
use crate::storage::delivery as store;
use crate::storage::{Storage, StorageError};

pub use backoff::{CircuitBreaker, Permit, retry_delay};
pub use client::{CallError, CredentialChange, Credentials, Endpoints, EsightClient};
use limiter::Limiter;

/// The parts that talk to eSight; absent until `[esight]` is complete.
struct Engine {
    client: Arc<EsightClient>,
    catalog: catalog::CatalogCache,
    breaker: CircuitBreaker,
}

/// State shared by the dispatcher, the posting thread and the handle.
struct Shared {
    engine: Option<Engine>,
    metrics: Arc<Metrics>,
    paused: AtomicBool,
    stop: AtomicBool,
    wake: Mutex<WakeState>,
    woken: Condvar,
    /// Delivery threads alive, and how many there should be.
    alive: AtomicUsize,
    threads: usize,
    lease: Duration,
    max_attempts: u32,
    max_age_ms: i64,
    backoff_initial: Duration,
    backoff_max: Duration,
    delivered: AtomicU64,
    limiter: Limiter,
    /// Posts outstanding (kept by the dispatcher, read by `status`).
    in_flight: AtomicUsize,
    /// Answers not yet taken by the dispatcher.
    completions: Mutex<Vec<poster::Completion>>,
    /// Since when eSight fails, its last error and last success.
    reachability: Reachability,
}

impl Shared {
    /// Queues an answer for the dispatcher and wakes it.
    fn complete(&self, c: poster::Completion) {
        self.completions.lock().unwrap_or_else(|e| e.into_inner()).push(c);
        self.wake_all();
    }

    fn answers_waiting(&self) -> usize {
        self.completions.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn take_completions(&self) -> Vec<poster::Completion> {
        std::mem::take(&mut *self.completions.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    fn wake_generation(&self) -> u64 {
        self.wake.lock().unwrap_or_else(|e| e.into_inner()).generation
    }

    /// Moves the generation on and wakes the dispatcher if it sleeps. A busy
    /// dispatcher sees the new generation before it sleeps again, so no
    /// wake-up is lost; with nobody asleep (under load) no system call is made.
    fn wake_all(&self) {
        let mut state = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        state.generation += 1;
        if state.sleeping > 0 {
            self.woken.notify_all();
        }
    }

    /// Sleeps until woken after `seen` or `timeout`; returns the generation.
    fn wait_for_work(&self, seen: u64, timeout: Duration) -> u64 {
        let mut state = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        state.sleeping += 1;
        let (mut state, _) = self
            .woken
            .wait_timeout_while(state, timeout, |s| s.generation == seen && !self.stopping())
            .unwrap_or_else(|e| e.into_inner());
        state.sleeping -= 1;
        state.generation
    }

    /// Whether newly committed messages give the dispatcher anything to do:
    /// not while paused or without eSight endpoints.
    fn wants_new_messages(&self) -> bool {
        self.engine.is_some() && !self.is_paused()
    }

    /// How long an idle dispatcher may sleep: until the next message is due.
    fn idle_sleep(&self, conn: &Connection) -> Duration {
        match store::next_due_at(conn) {
            Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_millis()).unwrap_or(0).max(1)),
            _ => Duration::from_secs(1),
        }
    }
}

/// The dispatcher's wake-up generation and whether it sleeps on it.
#[derive(Default)]
struct WakeState {
    generation: u64,
    sleeping: usize,
}

/// The delivery threads.
pub struct DeliveryService {
    shared: Arc<Shared>,
    dispatcher: Option<JoinHandle<()>>,
}

/// A cheap handle to wake, pause, resume and inspect delivery.
#[derive(Clone)]
pub struct DeliveryHandle {
    shared: Arc<Shared>,
}

/// What delivery is doing, for `/readyz`, `/metrics` and the stats endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryStatus {
    /// `running`, `paused`, `esight_unreachable` or `not_configured`.
    pub state: &'static str,
    /// Delivery threads alive (`delivery` and, with `[esight]`, `delivery-io`).
    pub workers_alive: usize,
    /// Delivery threads there should be.
    pub workers: usize,
    /// Messages delivered since start.
    pub delivered_since_start: u64,
    /// Consumption posts allowed at once now (adaptive).
    pub concurrency_limit: usize,
    /// Its upper bound, `delivery.max_in_flight`.
    pub max_in_flight: usize,
    /// Consumption posts outstanding now.
    pub in_flight: usize,
    /// Moving average of eSight's answer time to consumption posts (ms),
    /// once one was answered.
    pub esight_latency_ms: Option<f64>,
    /// The lowest recent answer time (ms): eSight's latency when nothing
    /// queues there.
    pub esight_base_latency_ms: Option<f64>,
    /// Seconds left of a `Retry-After` hold asked for by eSight, if any.
    pub retry_after_hold_seconds: Option<f64>,
}

impl DeliveryService {
    /// Releases leases left by a previous run and starts the dispatcher and,
    /// with `[esight]` complete, the posting thread.
    pub fn start(storage: &Storage, config: &Config, metrics: Arc<Metrics>) -> Result<Self, StorageError> {
        let conn = storage.open_connection()?;
        let now = now_millis();
        let released = store::release_leases(&conn, i64::MAX, now)?;
        if released > 0 {
            tracing::info!(released, "released delivery leases left by the previous run");
        }
        let paused = store::is_paused(&conn)?;
        drop(conn);
        let d = &config.delivery;
        if let Some(workers) = d.workers {
            tracing::warn!(
                workers,
                max_in_flight = d.max_in_flight,
                "delivery.workers is deprecated and has no effect: consumption posts run concurrently, \
                 adapted to eSight's latency up to delivery.max_in_flight; remove delivery.workers"
            );
        }
        let timeout = config.esight.timeout.get();
        let engine = Endpoints::from_config(&config.esight).map(|endpoints| Engine {
            client: Arc::new(EsightClient::new(endpoints, timeout, metrics.clone())),
            catalog: catalog::CatalogCache::new(config.esight.catalog_ttl.get()),
            breaker: CircuitBreaker::new(d.backoff_initial.get(), d.backoff_max.get()),
        });
        if engine.is_none() {
            tracing::warn!("[esight] is incomplete: messages are accepted but not delivered");
        }
        let threads = if engine.is_some() { 2 } else { 1 };
        let shared = Arc::new(Shared {
            engine,
            metrics: metrics.clone(),
            paused: AtomicBool::new(paused),
            stop: AtomicBool::new(false),
            wake: Mutex::new(WakeState::default()),
            woken: Condvar::new(),
            alive: AtomicUsize::new(0),
            threads,
            // A claimed message is posted at once: its lease need only
            // outlast one post (and the catalog fetch before it).
            lease: (timeout * 3).max(Duration::from_secs(60)),
            max_attempts: d.max_attempts,
            max_age_ms: i64::try_from(d.max_age.get().as_millis()).unwrap_or(i64::MAX),
            backoff_initial: d.backoff_initial.get(),
            backoff_max: d.backoff_max.get(),
            delivered: AtomicU64::new(0),
            limiter: Limiter::new(d.max_in_flight, std::time::Instant::now()),
            in_flight: AtomicUsize::new(0),
            completions: Mutex::new(Vec::new()),
            reachability: Reachability::default(),
        });
        let cannot_start =
            |source| StorageError::Io { context: "cannot start a delivery thread".into(), source };
        let poster = match shared.engine.as_ref() {
            Some(engine) => {
                let (for_done, for_exit) = (shared.clone(), shared.clone());
                shared.alive.fetch_add(1, Ordering::AcqRel);
                let started = poster::Poster::start(
                    engine.client.clone(),
                    timeout,
                    d.max_in_flight,
                    metrics,
                    Box::new(move |c| for_done.complete(c)),
                    Box::new(move || drop(AliveGuard(for_exit))),
                );
                Some(started.map_err(|e| {
                    shared.alive.fetch_sub(1, Ordering::AcqRel);
                    cannot_start(e)
                })?)
            }
            None => None,
        };
        // Relaxed durability is safe here: a delivery outcome lost to a
        // power cut only means the message is sent again (at-least-once,
        // with the same Idempotency-Key).
        let conn = storage.open_connection_with(Synchronous::Normal)?;
        let for_thread = shared.clone();
        shared.alive.fetch_add(1, Ordering::AcqRel);
        let dispatcher = std::thread::Builder::new()
            .name("delivery".into())
            .spawn(move || {
                let alive = AliveGuard(for_thread.clone());
                dispatcher::run(for_thread, conn, poster);
                drop(alive);
            })
            .map_err(|e| {
                shared.alive.fetch_sub(1, Ordering::AcqRel);
                cannot_start(e)
            })?;
        Ok(Self { shared, dispatcher: Some(dispatcher) })
    }

    /// A handle for the rest of the application.
    pub fn handle(&self) -> DeliveryHandle {
        DeliveryHandle { shared: self.shared.clone() }
    }

    /// Stops claiming, waits a few seconds for the posts outstanding,
    /// records them and puts the unanswered ones back to `pending`.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake_all();
        if let Some(t) = self.dispatcher.take() {
            let _ = t.join();
        }
    }
}

/// Counts a delivery thread as dead when it ends, even by panic.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
        if std::thread::panicking() {
            tracing::error!("a delivery thread died");
        }
    }
}

impl DeliveryHandle {
    /// Wakes the dispatcher: new messages were committed. Paused or without
    /// eSight endpoints, it has nothing to do with them (resuming wakes it
    /// itself).
    pub fn wake(&self) {
        if self.shared.wants_new_messages() {
            self.shared.wake_all();
        }
    }

    /// Pauses or resumes delivery (the caller persists the switch).
    pub fn set_paused(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Release);
        self.shared.wake_all();
    }

    /// Swaps the eSight credentials from the next call on; `None` when
    /// delivery is not configured (no client to give them to).
    pub fn set_credentials(&self, credentials: Credentials) -> Option<CredentialChange> {
        self.shared.engine.as_ref().map(|e| e.client.set_credentials(credentials))
    }

    /// True when `[esight]` was complete at start, so delivery runs.
    pub fn is_configured(&self) -> bool {
        self.shared.engine.is_some()
    }

    /// True when every delivery thread is alive (while running; a stopped
    /// service has none).
    pub fn healthy(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire) == self.shared.threads
    }

    /// Since when eSight fails, its last error and its last success.
    pub fn reachability(&self) -> ReachabilityFacts {
        self.shared.reachability.facts()
    }

    /// What delivery is doing.
    pub fn status(&self) -> DeliveryStatus {
        let s = &self.shared;
        let state = match &s.engine {
            None => "not_configured",
            Some(_) if s.is_paused() => "paused",
            Some(e) if e.breaker.is_open() => "esight_unreachable",
            Some(_) => "running",
        };
        let view = s.limiter.view(std::time::Instant::now());
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        DeliveryStatus {
            state,
            workers_alive: s.alive.load(Ordering::Acquire),
            workers: s.threads,
            delivered_since_start: s.delivered.load(Ordering::Relaxed),
            concurrency_limit: view.limit,
            max_in_flight: s.limiter.max(),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            esight_latency_ms: view.recent_rtt.map(ms),
            esight_base_latency_ms: view.base_rtt.map(ms),
            retry_after_hold_seconds: view.held_for.map(|d| (d.as_secs_f64() * 10.0).ceil() / 10.0),
        }
    }
}
