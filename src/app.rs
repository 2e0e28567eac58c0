//! Builds the running appliance from a configuration: takes the data
//! directory lock, opens and migrates the database, binds the listener, and
//! owns shutdown. Tests call exactly this (`App::build`, `port`,
//! `run_until_stopped`), with port 0 and a temporary data directory.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::delivery::{DeliveryHandle, DeliveryService};
use crate::http::router::Router;
use crate::metrics::Metrics;
use crate::storage::ingest::IngestWriter;
use crate::storage::{DataDirLock, Storage, StorageError};

/// Why the appliance could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory or database cannot be used.
    #[error(transparent)]
    Storage(#[from] StorageError),
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
    /// The router built from `api::ROUTES`.
    pub router: Router,
    /// When the process started serving.
    pub started: Instant,
}

/// A built, not yet running, appliance.
pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
    workers: DeliveryService,
    _lock: DataDirLock,
}

impl App {
    /// Prepares storage and binds the listener. Fails if another server holds
    /// the data directory or the database is newer than this binary.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let storage_cfg = config.storage.clone();
        let metrics = Arc::new(Metrics::default());
        let for_workers = metrics.clone();
        let worker_config = config.clone();
        let (lock, storage, workers, ingest) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            crate::storage::create_private_dir(&storage_cfg.data_dir)?;
            let lock = DataDirLock::acquire(&storage_cfg.data_dir)?;
            let storage = Storage::open(&storage_cfg)?;
            let status = storage.migrate()?;
            tracing::info!(schema_version = status.current, data_dir = %storage_cfg.data_dir.display(), "storage ready");
            let workers = DeliveryService::start(&storage, &worker_config, for_workers)?;
            let wake = workers.handle();
            let same_content = |a: &[u8], b: &[u8]| {
                a == b || crate::domain::message::content_hash(a) == crate::domain::message::content_hash(b)
            };
            let (ingest, _writer_thread) = IngestWriter::start(&storage, same_content, move |_| wake.wake())?;
            Ok((lock, storage, workers, ingest))
        })
        .await
        .map_err(|_| StorageError::TaskFailed)??;
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr, source })?;
        let state = Arc::new(AppState {
            config,
            storage,
            metrics,
            ingest,
            delivery: workers.handle(),
            router: Router::new(crate::api::ROUTES),
            started: Instant::now(),
        });
        Ok(Self { listener, state, workers, _lock: lock })
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

    /// Serves until `shutdown` resolves, drains in-flight requests, then
    /// checkpoints the WAL so the database file stands alone.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let Self { listener, state, workers, _lock } = self;
        tracing::info!(addr = %listener.local_addr().map_err(|source| AppError::Bind { addr: state.config.server.listen, source })?, "listening");
        crate::http::server::serve(listener, state.clone(), shutdown).await;
        tokio::task::spawn_blocking(move || workers.stop()).await.ok();
        let storage = state.storage.clone();
        let checkpoint = storage
            .run(|c| {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(())
            })
            .await;
        if let Err(e) = checkpoint {
            tracing::warn!(error = %e, "final WAL checkpoint failed");
        }
        tracing::info!("stopped");
        Ok(())
    }
}
