//! Background delivery to eSight: `delivery.workers` plain threads sharing one
//! eSight client, catalog cache and circuit breaker. Workers claim due
//! messages with a lease, deliver, and record outcomes in batches; they wake
//! when the ingest writer commits, when a message falls due, or every second.
//! On start, leases left by a crash are released, so nothing stays
//! `delivering`. Pausing (persisted) stops claiming; ingest goes on.

mod backoff;
mod catalog;
mod client;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;

use crate::clock::now_millis;
use crate::config::{Config, Synchronous};
use crate::metrics::Metrics;
use crate::storage::delivery as store;
use crate::storage::{Storage, StorageError};

pub use backoff::{CircuitBreaker, Permit, retry_delay};
pub use client::{CallError, CredentialChange, Credentials, Endpoints, EsightClient};

/// The parts that talk to eSight; absent until `[esight]` is complete.
struct Engine {
    client: EsightClient,
    catalog: catalog::CatalogCache,
    breaker: CircuitBreaker,
}

/// State shared by the workers and the handle.
struct Shared {
    engine: Option<Engine>,
    metrics: Arc<Metrics>,
    paused: AtomicBool,
    stop: AtomicBool,
    wake: Mutex<WakeState>,
    woken: Condvar,
    alive: AtomicUsize,
    workers: usize,
    lease: Duration,
    max_attempts: u32,
    max_age_ms: i64,
    backoff_initial: Duration,
    backoff_max: Duration,
    delivered: AtomicU64,
    /// Moving average of a consumption POST's duration (µs).
    post_micros: AtomicU64,
}

impl Shared {
    /// Folds one POST's duration into the moving average (weight 1/8).
    fn note_post_duration(&self, d: Duration) {
        let sample = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let old = self.post_micros.load(Ordering::Relaxed);
        self.post_micros.store(old - old / 8 + sample / 8, Ordering::Relaxed);
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

    /// Moves the generation on and wakes the workers that sleep. A busy worker
    /// sees the new generation before it sleeps again, so no wake-up is lost;
    /// with no worker asleep (under load) no system call is made.
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

    /// Whether newly committed messages give the workers anything to do:
    /// not while paused or without eSight endpoints.
    fn wants_new_messages(&self) -> bool {
        self.engine.is_some() && !self.is_paused()
    }

    /// How long an idle worker may sleep: until the next message is due.
    fn idle_sleep(&self, conn: &Connection) -> Duration {
        match store::next_due_at(conn) {
            Ok(Some(at)) => Duration::from_millis(u64::try_from(at - now_millis()).unwrap_or(0).max(1)),
            _ => Duration::from_secs(1),
        }
    }

    fn breaker_wait_ms(&self, breaker: &CircuitBreaker) -> i64 {
        breaker.remaining().map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn settled(&self, records: &[store::AttemptRecord]) {
        let delivered = records.iter().filter(|r| r.settlement == store::Settlement::Delivered).count();
        self.delivered.fetch_add(delivered as u64, Ordering::Relaxed);
    }
}

/// The workers' wake-up generation and how many of them sleep on it.
#[derive(Default)]
struct WakeState {
    generation: u64,
    sleeping: usize,
}

/// The worker threads.
pub struct DeliveryService {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// A cheap handle to wake, pause, resume and inspect the workers.
#[derive(Clone)]
pub struct DeliveryHandle {
    shared: Arc<Shared>,
}

/// What the workers are doing, for `/readyz` and the stats endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryStatus {
    /// `running`, `paused`, `esight_unreachable` or `not_configured`.
    pub state: &'static str,
    /// Worker threads alive.
    pub workers_alive: usize,
    /// Worker threads configured.
    pub workers: usize,
    /// Messages delivered since start.
    pub delivered_since_start: u64,
}

impl DeliveryService {
    /// Releases leases left by a previous run and starts the workers.
    pub fn start(storage: &Storage, config: &Config, metrics: Arc<Metrics>) -> Result<Self, StorageError> {
        let conn = storage.open_connection()?;
        let now = now_millis();
        let released = store::release_leases(&conn, i64::MAX, now)?;
        if released > 0 {
            tracing::info!(released, "released delivery leases left by the previous run");
        }
        let paused = store::is_paused(&conn)?;
        let d = &config.delivery;
        let engine = Endpoints::from_config(&config.esight).map(|endpoints| Engine {
            client: EsightClient::new(endpoints, config.esight.timeout.get(), d.workers, metrics.clone()),
            catalog: catalog::CatalogCache::new(config.esight.catalog_ttl.get()),
            breaker: CircuitBreaker::new(d.backoff_initial.get(), d.backoff_max.get()),
        });
        if engine.is_none() {
            tracing::warn!("[esight] is incomplete: messages are accepted but not delivered");
        }
        let timeout = config.esight.timeout.get();
        let shared = Arc::new(Shared {
            engine,
            metrics,
            paused: AtomicBool::new(paused),
            stop: AtomicBool::new(false),
            wake: Mutex::new(WakeState::default()),
            woken: Condvar::new(),
            alive: AtomicUsize::new(0),
            workers: d.workers,
            lease: (timeout * 3).max(Duration::from_secs(60)) * worker::claim_batch() as u32,
            max_attempts: d.max_attempts,
            max_age_ms: i64::try_from(d.max_age.get().as_millis()).unwrap_or(i64::MAX),
            backoff_initial: d.backoff_initial.get(),
            backoff_max: d.backoff_max.get(),
            delivered: AtomicU64::new(0),
            post_micros: AtomicU64::new(1_000),
        });
        let mut threads = Vec::with_capacity(d.workers);
        for n in 0..d.workers {
            // Relaxed durability is safe here: a delivery outcome lost to a
            // power cut only means the message is sent again (at-least-once,
            // with the same Idempotency-Key).
            let conn = storage.open_connection_with(Synchronous::Normal)?;
            let for_thread = shared.clone();
            shared.alive.fetch_add(1, Ordering::AcqRel);
            let spawned = std::thread::Builder::new().name(format!("delivery-{n}")).spawn(move || {
                let alive = AliveGuard(for_thread.clone());
                worker::run(for_thread, conn);
                drop(alive);
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(source) => {
                    shared.alive.fetch_sub(1, Ordering::AcqRel);
                    return Err(StorageError::Io {
                        context: "cannot start a delivery worker".into(),
                        source,
                    });
                }
            }
        }
        Ok(Self { shared, threads })
    }

    /// A handle for the rest of the application.
    pub fn handle(&self) -> DeliveryHandle {
        DeliveryHandle { shared: self.shared.clone() }
    }

    /// Stops the workers after the attempt in hand; the rest of their batch
    /// goes back to `pending`.
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake_all();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Counts a worker as dead when its thread ends, even by panic.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
        if std::thread::panicking() {
            tracing::error!("a delivery worker died");
        }
    }
}

impl DeliveryHandle {
    /// Wakes idle workers: new messages were committed. Paused or without
    /// eSight endpoints, the workers have nothing to do with them (resuming
    /// wakes them itself).
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

    /// Swaps the eSight credentials the workers use from their next call on;
    /// `None` when delivery is not configured (no client to give them to).
    pub fn set_credentials(&self, credentials: Credentials) -> Option<CredentialChange> {
        self.shared.engine.as_ref().map(|e| e.client.set_credentials(credentials))
    }

    /// True when `[esight]` was complete at start, so workers deliver.
    pub fn is_configured(&self) -> bool {
        self.shared.engine.is_some()
    }

    /// True when every worker thread is alive.
    pub fn healthy(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire) == self.shared.workers
    }

    /// The workers' state.
    pub fn status(&self) -> DeliveryStatus {
        let s = &self.shared;
        let state = match &s.engine {
            None => "not_configured",
            Some(_) if s.is_paused() => "paused",
            Some(e) if e.breaker.is_open() => "esight_unreachable",
            Some(_) => "running",
        };
        DeliveryStatus {
            state,
            workers_alive: s.alive.load(Ordering::Acquire),
            workers: s.workers,
            delivered_since_start: s.delivered.load(Ordering::Relaxed),
        }
    }
}
