//! `energyload serve`: runs the appliance until SIGTERM or SIGINT.

use std::process::ExitCode;

use crate::app::App;
use crate::config::LoadedConfig;

/// Runs the server; exit 0 after a clean shutdown.
pub fn run(loaded: LoadedConfig) -> ExitCode {
    let _logs = match crate::logging::init(&loaded.config, true) {
        Ok(g) => g,
        Err(e) => return super::fail(format!("cannot set up logging: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(format!("cannot start the async runtime: {e}")),
    };
    if let Some(file) = &loaded.file {
        tracing::info!(config = %file.display(), "configuration loaded");
    }
    runtime.block_on(async move {
        let app = match App::build(loaded.config).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return super::fail(e);
            }
        };
        match app.run_until_stopped(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::fail(e),
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
