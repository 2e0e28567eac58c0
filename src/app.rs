//! Builds the running appliance from a configuration: takes the data
//! directory lock, opens and migrates the database, loads signing keys and
//! the identity directory, starts the ingest writer, delivery workers and
//! housekeeping, and owns shutdown. The listener is bound first, so a busy
//! port leaves the data directory untouched. Tests call exactly
//! this (`App::build`, `port`, `run_until_stopped`), with port 0 and a
//! temporary data directory.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::auth::directory::Directory;
use crate::auth::lockout::Lockout;
use crate::auth::passwords::Argon2Settings;
use crate::auth::signing_keys::SigningKeys;
use crate::auth::tokens::{AccessTokens, TokenSettings};
use crate::auth::{Guard, PasswordHasherPool};
use crate::config::Config;
use crate::delivery::{DeliveryHandle, DeliveryService};
use crate::http::router::Router;
use crate::http::tls::{TlsMaterial, TlsSlot};
use crate::metrics::Metrics;
use crate::replication::Replication;
use crate::storage::ingest::{Acknowledgement, IngestWriter};
use crate::storage::{DataDirLock, Storage, StorageError};

/// Why the appliance could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory or database cannot be used.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The signing keys cannot be loaded or created.
    #[error("signing keys: {0}")]
    Keys(String),
    /// The first admin cannot be created.
    #[error("bootstrap admin: {0}")]
    Bootstrap(String),
    /// The TLS certificate or key cannot be used.
    #[error("TLS (server.tls_cert / server.tls_key): {0}")]
    Tls(#[from] crate::http::tls::TlsError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// State shared by every request handler and background thread.
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    /// The database.
    pub storage: Storage,
    /// Process metrics (shared with the delivery workers).
    pub metrics: Arc<Metrics>,
    /// The group-commit writer for accepted messages.
    pub ingest: IngestWriter,
    /// The delivery workers.
    pub delivery: DeliveryHandle,
    /// The request guard (token verification and its cache).
    pub guard: Guard,
    /// Users, API keys and revoked tokens, in memory.
    pub directory: Directory,
    /// Failed-login windows.
    pub lockout: Lockout,
    /// The bounded argon2 pool.
    pub passwords: PasswordHasherPool,
    /// The router built from `api::ROUTES`.
    pub router: Router<crate::api::Endpoint>,
    /// When the process started serving.
    pub started: Instant,
    /// Free disk is under `storage.min_free_bytes` (kept by housekeeping).
    pub disk_low: AtomicBool,
    /// Bytes the database uses: file + WAL, less free pages (kept by
    /// housekeeping).
    pub db_used_bytes: AtomicU64,
    /// `db_used_bytes` is over a non-zero `storage.max_db_bytes`.
    pub db_full: AtomicBool,
    /// The certificate served when TLS is on (`None`: plain HTTP).
    pub tls: Option<TlsSlot>,
    /// Messages `pending` or `delivering` (approximate; kept by housekeeping
    /// and ingest).
    pub open_messages: AtomicI64,
    /// Set at shutdown; background threads stop.
    pub stopping: AtomicBool,
    /// Repeated `access_denied` events counted per window (flushed by
    /// housekeeping).
    pub denials: crate::audit::denials::Denials,
    /// The at most one second old values `/readyz` and `/metrics` answer from.
    pub ops_snapshot: crate::api::OpsSnapshot,
    /// Message counts and failure groups, reused while computing them is slow.
    pub slow_reads: crate::api::SlowReads,
    /// Messages refused at ingest in the last hour, by code and API key
    /// (memory only).
    pub invalid_traffic: crate::invalid_traffic::InvalidTraffic,
    /// Litestream replication (off unless configured).
    pub replication: Replication,
}

/// A built, not yet running, appliance.
pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
    workers: DeliveryService,
    housekeeping: JoinHandle<()>,
    _lock: DataDirLock,
}

struct Prepared {
    lock: DataDirLock,
    storage: Storage,
    workers: DeliveryService,
    ingest: IngestWriter,
    tokens: AccessTokens,
    directory: Directory,
    open_messages: i64,
    db_used_bytes: u64,
    replication: Replication,
}

fn prepare(config: &Config, metrics: Arc<Metrics>) -> Result<Prepared, AppError> {
    let storage_cfg = &config.storage;
    crate::storage::create_private_dir(&storage_cfg.data_dir)?;
    let lock = DataDirLock::acquire(&storage_cfg.data_dir)?;
    // Under the lock: no other server is mid-download.
    crate::storage::clear_downloads(&storage_cfg.data_dir);
    let storage = Storage::open(storage_cfg)?;
    let status = storage.migrate()?;
    tracing::info!(schema_version = status.current, data_dir = %storage_cfg.data_dir.display(), "storage ready");
    let ttl = config.auth.token_ttl.get();
    let keys =
        SigningKeys::load_or_create(&storage_cfg.data_dir, ttl).map_err(|e| AppError::Keys(e.to_string()))?;
    let tokens = AccessTokens::new(
        keys,
        TokenSettings { issuer: config.auth.issuer.clone(), audience: config.auth.audience.clone(), ttl },
    );
    let mut conn = storage.open_connection()?;
    crate::users::bootstrap_admin(&mut conn, config).map_err(AppError::Bootstrap)?;
    // The lockout's windows start empty: no recorded username lock holds.
    crate::storage::identity::forget_locks(&conn)?;
    let a = &config.auth;
    let default_rate = (a.api_key_rate_per_sec > 0.0).then_some((a.api_key_rate_per_sec, a.api_key_burst));
    let directory = Directory::load(&conn, default_rate)?;
    let open_messages = crate::storage::messages::count_open(&conn)?;
    let db_used_bytes = storage.db_used_bytes(&conn)?;
    let workers = DeliveryService::start(&storage, config, metrics)?;
    let wake = workers.handle();
    let same_content = |a: &[u8], b: &[u8]| {
        a == b || crate::domain::message::content_hash(a) == crate::domain::message::content_hash(b)
    };
    let replication = Replication::start(&config.replication, &storage_cfg.data_dir).map_err(|source| {
        StorageError::Io { context: "cannot start the replication thread".into(), source }
    })?;
    let acknowledgement = match (replication.acknowledging(), replication.barrier()) {
        (Some(barrier), _) => Acknowledgement::Replicated(barrier.clone()),
        (None, Some(barrier)) => Acknowledgement::LocalReplicated(barrier.clone()),
        (None, None) => Acknowledgement::Local,
    };
    let (ingest, _writer_thread) =
        IngestWriter::start(&storage, same_content, acknowledgement, move |_| wake.wake())?;
    Ok(Prepared {
        lock,
        storage,
        workers,
        ingest,
        tokens,
        directory,
        open_messages,
        db_used_bytes,
        replication,
    })
}

/// Binds the listen address: the first thing start-up does, so a busy port
/// is found before anything is written to disk.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr, source })
}

impl App {
    /// Binds the listener, then prepares storage, keys and workers. Fails if
    /// the address is taken (before the data directory is touched), another
    /// server holds the data directory or the database is newer than this
    /// binary.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let listener = bind(config.server.listen).await?;
        Self::build_on(config, listener).await
    }

    /// [`App::build`] on a listener already bound (by [`bind`]): `serve`
    /// binds before it sets up logging (which writes into the data
    /// directory), the demo before it starts the simulator that must know
    /// the address.
    pub async fn build_on(config: Config, listener: TcpListener) -> Result<Self, AppError> {
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => {
                let material = TlsMaterial::load(cert, key)?;
                tracing::info!(cert = %cert.display(), fingerprint = material.fingerprint(), "TLS on");
                Some(TlsSlot::new(material))
            }
            _ => None,
        };
        let metrics = Arc::new(Metrics::default());
        let (for_workers, cfg) = (metrics.clone(), config.clone());
        let p = tokio::task::spawn_blocking(move || prepare(&cfg, for_workers))
            .await
            .map_err(|_| AppError::Storage(StorageError::TaskFailed))??;
        let addr = config.server.listen;
        let a = &config.auth;
        let argon2 = Argon2Settings::new(a.argon2_memory_kib, a.argon2_iterations, a.argon2_parallelism)
            .map_err(|e| AppError::Bootstrap(e.to_string()))?;
        let concurrency = match a.password_hash_concurrency {
            0 => PasswordHasherPool::default_concurrency(),
            n => n,
        };
        let passwords = PasswordHasherPool::new(argon2, concurrency, a.password_queue_timeout.get());
        let lockout = Lockout::new(a.lockout_failures, a.lockout_ip_failures, a.lockout_window.get());
        let guard = Guard::new(p.tokens, a.api_key_required);
        let housekeeping_conn = p.storage.open_connection()?;
        let state = Arc::new(AppState {
            storage: p.storage,
            metrics,
            ingest: p.ingest,
            delivery: p.workers.handle(),
            guard,
            directory: p.directory,
            lockout,
            passwords,
            router: Router::new(crate::api::ROUTES),
            started: Instant::now(),
            disk_low: AtomicBool::new(false),
            db_used_bytes: AtomicU64::new(p.db_used_bytes),
            db_full: AtomicBool::new(false),
            tls,
            open_messages: AtomicI64::new(p.open_messages),
            stopping: AtomicBool::new(false),
            denials: crate::audit::denials::Denials::default(),
            ops_snapshot: crate::api::OpsSnapshot::default(),
            slow_reads: crate::api::SlowReads::default(),
            invalid_traffic: Default::default(),
            replication: p.replication,
            config,
        });
        crate::housekeeping::update_disk_floor(&state);
        crate::housekeeping::update_db_cap(&state, p.db_used_bytes);
        let housekeeping = crate::housekeeping::start(state.clone(), housekeeping_conn)
            .map_err(|source| AppError::Bind { addr, source })?;
        Ok(Self { listener, state, workers: p.workers, housekeeping, _lock: p.lock })
    }

    /// The bound address (with the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Shared state, for callers that start companions (the demo).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, drains in-flight requests, stops the
    /// workers after their attempt in hand, then checkpoints the WAL so the
    /// database file stands alone.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let Self { listener, state, workers, housekeeping, _lock } = self;
        let addr = listener
            .local_addr()
            .map_err(|source| AppError::Bind { addr: state.config.server.listen, source })?;
        tracing::info!(addr = %addr, tls = state.tls.is_some(), "listening");
        let (stop_poller, poller) = start_inbox_poller(&state);
        crate::http::server::serve(listener, state.clone(), shutdown).await;
        // An import in progress finishes (its files are committed and moved)
        // before the writer and workers stop.
        let _ = stop_poller.send(true);
        let _ = poller.await;
        state.stopping.store(true, Ordering::Release);
        housekeeping.thread().unpark();
        tokio::task::spawn_blocking(move || {
            workers.stop();
            let _ = housekeeping.join();
        })
        .await
        .ok();
        // While Litestream replicates, only a PASSIVE checkpoint: a
        // TRUNCATE would restart the WAL under it and force a new snapshot.
        let mode = if state.replication.is_on() { "PASSIVE" } else { "TRUNCATE" };
        let checkpoint = state
            .storage
            .run(move |c| {
                c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))?;
                Ok(())
            })
            .await;
        if let Err(e) = checkpoint {
            tracing::warn!(error = %e, "final WAL checkpoint failed");
        }
        let for_stop = state.clone();
        tokio::task::spawn_blocking(move || for_stop.replication.stop(std::time::Duration::from_secs(5)))
            .await
            .ok();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Starts the periodic inbox import (`inbox.poll_interval`; zero is off and
/// the task ends at once). Send `true` to stop it.
fn start_inbox_poller(state: &AppState) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let poller = crate::inbox::spawn_poller(
        state.config.inbox_dir(),
        state.config.inbox.poll_interval.get(),
        state.config.server.max_body_bytes,
        state.ingest.clone(),
        stopped,
    );
    (stop, poller)
}
