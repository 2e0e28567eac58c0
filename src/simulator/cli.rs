//! `energyload esight-sim`: the simulator alone, configured from flags, until
//! SIGINT or SIGTERM. Passwords and the API key can come from files
//! (`--*-file`), which keeps them out of `ps`; no secret is ever printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{
    ApplianceLink, Capacity, Catalog, DEFAULT_PASSWORD, DEFAULT_POST_PASSWORD, DEFAULT_POST_USERNAME,
    DEFAULT_USERNAME, EsightSim, Faults, Outage, OutageMode, SimConfig, SimError,
};
use crate::config::Secret;

/// Flags of `energyload esight-sim`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Endpoints: GET /token (Basic), GET /sites and GET /meters (Bearer), POST /consumption (Basic, answers 202).
Control API: GET /_sim/received, /_sim/stats, /_sim/reports, GET|POST|DELETE /_sim/faults,
  GET|PUT /_sim/capacity, POST /_sim/reset.

Examples:
  energyload esight-sim --listen 127.0.0.1:8090
  energyload esight-sim --listen 127.0.0.1:8090 --error-rate 503=0.1 --latency-ms 50
  energyload esight-sim --latency-ms 100 --capacity 64 --queue 128
  energyload esight-sim --status-sequence 503,503,200 --error-rate 429=0.05 --retry-after 2
  energyload esight-sim --outage-mode refuse --outage-for 10s --outage-every 2m
  energyload esight-sim --report-fraction 0.1 --report-delay 2s --appliance-url http://127.0.0.1:8080 \\
      --appliance-api-key-file key.txt --appliance-username esight --appliance-password-file esight.pw
  curl -s -X POST localhost:8090/_sim/faults -H 'Content-Type: application/json' -d '{\"sequence\":[503,200]}'
  curl -s -X PUT localhost:8090/_sim/capacity -H 'Content-Type: application/json' -d '{\"capacity\":16}'")]
pub struct EsightSimArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Site catalog (`[{"SiteCode": ...}]`); default: the compiled-in sample.
    #[arg(long, value_name = "FILE")]
    pub catalog_sites: Option<PathBuf>,
    /// Meter catalog (`[{"MeterCode": ...}]`); default: the compiled-in sample.
    #[arg(long, value_name = "FILE")]
    pub catalog_meters: Option<PathBuf>,
    /// Basic-auth user for GET /token.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_USERNAME)]
    pub username: String,
    /// Basic-auth password for GET /token (default: the documented sample password).
    #[arg(long, value_name = "PASSWORD", conflicts_with = "password_file")]
    pub password: Option<String>,
    /// File holding the password for GET /token.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Basic-auth user for POST /consumption.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_POST_USERNAME)]
    pub post_username: String,
    /// Basic-auth password for POST /consumption.
    #[arg(long, value_name = "PASSWORD", conflicts_with = "post_password_file")]
    pub post_password: Option<String>,
    /// File holding the password for POST /consumption.
    #[arg(long, value_name = "FILE")]
    pub post_password_file: Option<PathBuf>,
    /// Access-token lifetime: seconds, or a duration such as 90s, 15m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// Share of consumption posts answered with STATUS (repeatable), e.g. 503=0.1.
    #[arg(long = "error-rate", value_name = "STATUS=RATE", value_parser = parse_error_rate)]
    pub error_rates: Vec<(u16, f64)>,
    /// Statuses for the first consumption posts, in order, e.g. 503,503,200.
    #[arg(long, value_name = "STATUS,...", value_delimiter = ',')]
    pub status_sequence: Vec<u16>,
    /// Milliseconds added before every eSight answer.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Consumption posts served at once (default: unlimited). More wait in a FIFO
    /// queue (their latency grows); past the queue they get 429 with Retry-After: 1.
    #[arg(long, value_name = "N")]
    pub capacity: Option<u64>,
    /// Consumption posts that may wait while N are in service (default: 2 x capacity).
    #[arg(long, value_name = "M", requires = "capacity")]
    pub queue: Option<u64>,
    /// Retry-After seconds sent with injected 429 and 503 answers.
    #[arg(long, value_name = "SECONDS")]
    pub retry_after: Option<u64>,
    /// Outage mode: refuse (port closed) or hang (requests held until the window ends).
    #[arg(long, value_name = "MODE", value_parser = parse_outage_mode, requires = "outage_for")]
    pub outage_mode: Option<OutageMode>,
    /// Length of the outage window.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "outage_mode")]
    pub outage_for: Option<Duration>,
    /// Delay before the first outage window (default: at once).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "outage_mode")]
    pub outage_starts_in: Option<Duration>,
    /// Repeat the outage window with this period.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "outage_mode")]
    pub outage_every: Option<Duration>,
    /// Fraction (0-1) of accepted messages that get an error report posted to the appliance.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub report_fraction: f64,
    /// Delay between accepting a message and posting its error report.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub report_delay: Duration,
    /// The appliance's base URL, for error reports.
    #[arg(long, value_name = "URL")]
    pub appliance_url: Option<String>,
    /// API key for the appliance.
    #[arg(long, value_name = "KEY", conflicts_with = "appliance_api_key_file")]
    pub appliance_api_key: Option<String>,
    /// File holding the API key for the appliance.
    #[arg(long, value_name = "FILE")]
    pub appliance_api_key_file: Option<PathBuf>,
    /// Appliance user with role esight.
    #[arg(long, value_name = "NAME", default_value = "esight")]
    pub appliance_username: String,
    /// Password of the appliance user.
    #[arg(long, value_name = "PASSWORD", conflicts_with = "appliance_password_file")]
    pub appliance_password: Option<String>,
    /// File holding the password of the appliance user.
    #[arg(long, value_name = "FILE")]
    pub appliance_password_file: Option<PathBuf>,
    /// How many received consumption posts are kept for /_sim/received.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub keep_received: usize,
}

impl EsightSimArgs {
    /// The simulator configuration these flags describe (secret files read).
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let faults = Faults {
            error_rates: self.error_rates.iter().copied().collect(),
            sequence: self.status_sequence.clone(),
            latency_ms: self.latency_ms,
            retry_after_secs: self.retry_after,
            outage: self.outage_mode.zip(self.outage_for).map(|(mode, length)| Outage {
                mode,
                starts_in_ms: self.outage_starts_in.map_or(0, millis),
                duration_ms: millis(length),
                every_ms: self.outage_every.map(millis),
            }),
            report_fraction: self.report_fraction,
            report_delay_ms: millis(self.report_delay),
        };
        let appliance = match &self.appliance_url {
            None => None,
            Some(url) => Some(ApplianceLink {
                base_url: url.clone(),
                api_key: secret(&self.appliance_api_key, self.appliance_api_key_file.as_deref(), None)?,
                username: self.appliance_username.clone(),
                password: secret(&self.appliance_password, self.appliance_password_file.as_deref(), None)?,
            }),
        };
        Ok(SimConfig {
            listen: self.listen,
            username: self.username.clone(),
            password: secret(&self.password, self.password_file.as_deref(), Some(DEFAULT_PASSWORD))?,
            post_username: self.post_username.clone(),
            post_password: secret(
                &self.post_password,
                self.post_password_file.as_deref(),
                Some(DEFAULT_POST_PASSWORD),
            )?,
            token_ttl: self.token_ttl,
            catalog: Catalog::from_files(self.catalog_sites.as_deref(), self.catalog_meters.as_deref())?,
            faults,
            capacity: self.capacity.map(|n| Capacity::new(n, self.queue)).transpose()?,
            appliance,
            max_received: self.keep_received,
            ..SimConfig::default()
        })
    }
}

/// Runs the simulator until SIGINT or SIGTERM. Exit 2 for bad flags or
/// files, 1 when it cannot start, 0 after a clean stop.
pub fn run(args: &EsightSimArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let sim = match EsightSim::start(config).await {
            Ok(sim) => sim,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        print_settings(&sim);
        if let Err(e) = stop_signal().await {
            eprintln!("error: cannot wait for signals: {e}");
        }
        sim.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// What an operator pastes into the appliance's `[esight]` section.
fn print_settings(sim: &EsightSim) {
    let cfg = sim.config();
    println!("eSight simulator listening on {}", sim.base_url());
    println!("[esight]");
    println!("token_url = \"{}\"", sim.token_url());
    println!("sites_url = \"{}\"", sim.sites_url());
    println!("meters_url = \"{}\"", sim.meters_url());
    println!("consumption_url = \"{}\"", sim.consumption_url());
    println!("username = \"{}\"", cfg.username);
    println!("post_username = \"{}\"", cfg.post_username);
    println!("# passwords: as given to the simulator (not printed)");
    match sim.capacity().get() {
        Some(c) => println!("capacity: {} posts at once, {} may wait", c.concurrent(), c.queue()),
        None => println!("capacity: unlimited"),
    }
    println!(
        "control API: {}/_sim/stats, {}/_sim/received, {}/_sim/faults, {}/_sim/capacity",
        sim.base_url(),
        sim.base_url(),
        sim.base_url(),
        sim.base_url()
    );
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

/// A secret from the flag, else from the file (trailing newline dropped),
/// else the default; missing without a default is an error.
fn secret(value: &Option<String>, file: Option<&Path>, default: Option<&str>) -> Result<Secret, SimError> {
    if let Some(v) = value {
        return Ok(Secret::new(v.clone()));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimError::SecretFile { path: path.display().to_string(), reason: e.to_string() })?;
        let trimmed = text.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Err(SimError::SecretFile {
                path: path.display().to_string(),
                reason: "the file is empty".into(),
            });
        }
        return Ok(Secret::new(trimmed));
    }
    default.map(Secret::new).ok_or(SimError::NoAppliance)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole seconds (`3600`) or a duration with a unit (`500ms`, `2s`, `15m`, `1h`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => s.parse::<crate::config::Duration>().map(crate::config::Duration::get),
    }
}

/// `STATUS=RATE`, e.g. `503=0.1`.
fn parse_error_rate(s: &str) -> Result<(u16, f64), String> {
    let (status, rate) = s.split_once('=').ok_or("expected STATUS=RATE, e.g. 503=0.1")?;
    let status: u16 = status.trim().parse().map_err(|_| format!("{status:?} is not a status code"))?;
    let rate: f64 = rate.trim().parse().map_err(|_| format!("{rate:?} is not a number"))?;
    Ok((status, rate))
}

fn parse_outage_mode(s: &str) -> Result<OutageMode, String> {
    match s {
        "refuse" => Ok(OutageMode::Refuse),
        "hang" => Ok(OutageMode::Hang),
        _ => Err("expected refuse or hang".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: EsightSimArgs,
    }

    fn parse(argv: &[&str]) -> Result<EsightSimArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("esight-sim").chain(argv.iter().copied())).map(|w| w.args)
    }

    #[test]
    fn flags_become_a_configuration() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--error-rate",
            "503=0.1",
            "--error-rate",
            "429=0.2",
            "--status-sequence",
            "503,503,200",
            "--latency-ms",
            "50",
            "--token-ttl",
            "3600",
            "--report-delay",
            "500ms",
            "--outage-mode",
            "hang",
            "--outage-for",
            "10s",
            "--outage-every",
            "1m",
        ])
        .unwrap();
        let cfg = args.to_config().unwrap();
        assert_eq!(cfg.faults.error_rates.get(&503), Some(&0.1));
        assert_eq!(cfg.faults.sequence, vec![503, 503, 200]);
        assert_eq!(cfg.token_ttl, Duration::from_secs(3600));
        assert_eq!(cfg.faults.report_delay_ms, 500);
        let outage = cfg.faults.outage.unwrap();
        assert_eq!(
            (outage.mode, outage.duration_ms, outage.every_ms),
            (OutageMode::Hang, 10_000, Some(60_000))
        );
        assert_eq!(cfg.password.expose(), DEFAULT_PASSWORD);
        assert_eq!(cfg.capacity, None, "unlimited unless asked");
    }

    #[test]
    fn capacity_flags_become_a_capacity() {
        let cfg = parse(&["--capacity", "64"]).unwrap().to_config().unwrap();
        assert_eq!(cfg.capacity, Some(Capacity::new(64, Some(128)).unwrap()));
        let cfg = parse(&["--capacity", "3", "--queue", "0"]).unwrap().to_config().unwrap();
        assert_eq!(cfg.capacity.map(|c| (c.concurrent(), c.queue())), Some((3, 0)));
        assert!(parse(&["--queue", "5"]).is_err(), "a queue needs a capacity");
        assert!(matches!(
            parse(&["--capacity", "0"]).unwrap().to_config(),
            Err(SimError::InvalidCapacity(_))
        ));
    }

    #[test]
    fn secrets_come_from_files_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let args = parse(&["--password-file", file.to_str().unwrap()]).unwrap();
        assert_eq!(args.to_config().unwrap().password.expose(), "s3cret");
        assert!(parse(&["--error-rate", "503"]).is_err());
        assert!(parse(&["--outage-mode", "hang"]).is_err());
        assert!(parse(&["--password", "a", "--password-file", "b"]).is_err());
        let no_key = parse(&["--appliance-url", "http://127.0.0.1:1", "--appliance-password", "p"]).unwrap();
        assert!(no_key.to_config().is_err());
    }
}
