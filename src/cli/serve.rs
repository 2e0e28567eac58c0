//! `energyload serve`: runs the appliance until SIGTERM or SIGINT, reloads
//! secrets and TLS certificates on SIGHUP, and keeps systemd informed
//! (`READY=1` once `/readyz` passes, `RELOADING=1` … `READY=1` around a
//! reload, `STOPPING=1` at shutdown) when `NOTIFY_SOCKET` is set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::app::{App, AppError, AppState};
use crate::config::{ConfigSource, LoadedConfig};
use crate::storage::StorageError;
use crate::systemd_notify::Notifier;

/// How often readiness is checked again while start-up waits for it.
const READINESS_RETRY: Duration = Duration::from_secs(1);

/// Runs the server; exit 0 after a clean shutdown. A refusal to start is
/// printed once, on stderr (not logged too).
pub fn run(loaded: LoadedConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return super::fail(format!("cannot start the async runtime: {e}")),
    };
    // The port before anything else: logging and start-up write into the
    // data directory, and a busy port must leave none behind.
    let listener = match runtime.block_on(crate::app::bind(loaded.config.server.listen)) {
        Ok(l) => l,
        Err(e) => return super::fail(format!("{}; {}", bind_error(&loaded, &e), LISTEN_HINT)),
    };
    let _logs = match crate::logging::init(&loaded.config, true) {
        Ok(g) => g,
        Err(e) => return super::fail(format!("cannot set up logging: {e}")),
    };
    if let Some(file) = &loaded.file {
        tracing::info!(config = %file.display(), "configuration loaded");
    }
    runtime.block_on(async move {
        let notifier = Notifier::from_env();
        // Installed before start-up, so an early SIGHUP waits instead of
        // ending the process (its default action).
        let hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => return super::fail(format!("cannot handle SIGHUP: {e}")),
        };
        let stop_requested = shutdown_signal();
        notifier.status("starting");
        let app = match App::build_on(loaded.config, listener).await {
            Ok(app) => app,
            Err(e) => {
                notifier.status(&format!("cannot start: {e}"));
                return match e {
                    AppError::Storage(StorageError::Locked { .. }) => {
                        super::fail(format!("{e}; {DATA_DIR_HINT}"))
                    }
                    e => super::fail(e),
                };
            }
        };
        let lifecycle =
            tokio::spawn(lifecycle(app.state(), app.local_addr(), loaded.file, notifier.clone(), hangups));
        let stop_lifecycle = lifecycle.abort_handle();
        let shutdown = async move {
            stop_requested.await;
            stop_lifecycle.abort();
            notifier.stopping("stopping: finishing in-flight requests");
        };
        match app.run_until_stopped(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::fail(e),
        }
    })
}

/// What to do about a busy or unusable listen address.
const LISTEN_HINT: &str = "stop the process that uses it or choose another address with server.listen in \
     the config file or ENERGYLOAD_SERVER_LISTEN (port 0: any free port)";

/// What to do about a data directory another process holds.
const DATA_DIR_HINT: &str = "stop it or use another data directory (storage.data_dir in the config file or ENERGYLOAD_STORAGE_DATA_DIR)";

/// `cannot listen on ADDR (server.listen, from SOURCE): CAUSE`.
fn bind_error(loaded: &LoadedConfig, e: &AppError) -> String {
    let AppError::Bind { addr, source } = e else { return e.to_string() };
    let origin = match loaded.origin("server.listen") {
        ConfigSource::Default => "the built-in default".to_string(),
        origin => origin.to_string(),
    };
    format!("cannot listen on {addr} (server.listen, from {origin}): {source}")
}

/// Tells systemd once the server is ready, then reloads on every SIGHUP
/// (one at a time) and says so before and after.
async fn lifecycle(
    state: Arc<AppState>,
    addr: SocketAddr,
    file: Option<PathBuf>,
    notifier: Notifier,
    mut hangups: Signal,
) {
    wait_until_ready(&state, addr, &notifier).await;
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading secrets and TLS certificates");
        notifier.reloading("reloading secrets and TLS certificates");
        let status = match crate::reload::reload_and_audit(state.clone(), file.clone()).await {
            Ok(_) => format!("serving on {addr}; configuration reloaded"),
            Err(e) => format!("serving on {addr}; the last reload failed: {e}"),
        };
        notifier.ready(&status);
    }
}

/// Waits until the readiness checks pass, then sends `READY=1`. Until then
/// the status line says what is missing.
async fn wait_until_ready(state: &AppState, addr: SocketAddr, notifier: &Notifier) {
    let mut last_reason = String::new();
    loop {
        let (ready, body) = crate::api::readiness(state).await;
        if ready {
            notifier.ready(&format!("serving on {addr}"));
            tracing::info!("ready");
            return;
        }
        let reason = failing_checks(&body);
        if reason != last_reason {
            tracing::warn!(reason = %reason, "not ready yet");
            notifier.status(&format!("not ready: {reason}"));
            last_reason = reason;
        }
        tokio::time::sleep(READINESS_RETRY).await;
    }
}

/// `check: reason` for every failing readiness check.
fn failing_checks(body: &serde_json::Value) -> String {
    let Some(checks) = body["checks"].as_object() else { return "unknown".into() };
    let failing: Vec<String> = checks
        .iter()
        .filter(|(_, c)| c["status"] != "ok")
        .map(|(name, c)| format!("{name}: {}", c["reason"].as_str().unwrap_or("failing")))
        .collect();
    failing.join("; ")
}

/// Installs the SIGTERM and SIGINT handlers at once, so that a signal
/// arriving during start-up stops the server cleanly instead of killing it
/// (the default action), and resolves on the first of them. Call it inside
/// the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut int) = (term.expect("SIGTERM handler"), int.expect("SIGINT handler"));
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
