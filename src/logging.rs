//! Log set-up: `tracing` events to stdout and (unless `log.files = false`) to
//! daily-rotated files under `log.dir` (keeping `log.keep_files`), as text or
//! JSON lines. The returned guard flushes the file writer when dropped.
//! The access log (one line per request, `log.access`) has its own cheaper
//! path, [`crate::access_log`], to the same stdout and daily file.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{Config, LogFormat};

/// Keeps the background log writers alive; drop it last. The access log
/// is written out and its thread joined first.
pub struct LogGuard {
    _access: Option<crate::access_log::Writer>,
    _stdout: WorkerGuard,
    _file: Option<WorkerGuard>,
}

/// Installs the global subscriber. With `to_files` and `log.files`, also
/// writes daily files under the configured log directory.
pub fn init(config: &Config, to_files: bool) -> Result<LogGuard, String> {
    let filter = || EnvFilter::builder().parse(&config.log.level).map_err(|e| format!("log.level: {e}"));
    let json = config.log.format == LogFormat::Json;
    // Lines are handed to a writer thread; when its queue is full the caller
    // waits rather than losing lines.
    let ansi = std::io::stdout().is_terminal();
    let (out, stdout_guard) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stdout());
    let stdout = if json {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(out)
            .with_filter(filter()?)
            .boxed()
    } else {
        fmt::layer().with_ansi(ansi).with_writer(out).with_filter(filter()?).boxed()
    };
    let mut file = None;
    let (file_layer, guard) = if to_files && config.log.files {
        let dir = config.log_dir();
        crate::storage::create_private_dir(&dir).map_err(|e| e.to_string())?;
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix("energyload")
            .filename_suffix("log")
            .max_log_files(config.log.keep_files)
            .build(&dir)
            .map_err(|e| format!("log.dir {}: {e}", dir.display()))?;
        let appender = SharedAppender(Arc::new(appender));
        file = Some(appender.clone());
        let (writer, guard) =
            tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(appender);
        let layer = if json {
            fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(writer)
                .with_filter(filter()?)
                .boxed()
        } else {
            fmt::layer().with_ansi(false).with_writer(writer).with_filter(filter()?).boxed()
        };
        (Some(layer), Some(guard))
    } else {
        (None, None)
    };
    tracing_subscriber::registry().with(stdout).with(file_layer).try_init().map_err(|e| e.to_string())?;
    // A level that hides `energyload::access` (e.g. `warn`) turns it off too.
    let access = if config.log.access && tracing::enabled!(target: "energyload::access", tracing::Level::INFO)
    {
        let mut to: Vec<crate::access_log::Destination> = vec![Box::new(std::io::stdout())];
        to.extend(file.map(|f| Box::new(f) as crate::access_log::Destination));
        crate::access_log::install(json, config.log.access_sample, to)
    } else {
        None
    };
    Ok(LogGuard { _access: access, _stdout: stdout_guard, _file: guard })
}

/// The one daily-file appender, shared by the `tracing` writer and the
/// access log, so both rotate and prune together.
#[derive(Clone)]
struct SharedAppender(Arc<RollingFileAppender>);

impl Write for SharedAppender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.make_writer().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.make_writer().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.make_writer().flush()
    }
}
