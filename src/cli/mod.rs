//! The command line (clap): one module per command group. Every command
//! accepts `--config FILE` and prints `--help` with examples.

mod backup;
mod config_cmd;
mod demo;
mod identity;
mod migrate;
mod restore;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, LoadedConfig};

/// energyload — relays energy-meter data to eSight from one binary.
#[derive(Debug, Parser)]
#[command(name = "energyload", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: ./config.toml if present, else /etc/energyload/config.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance: HTTP API, delivery to eSight, housekeeping.
    #[command(
        after_help = "Examples:\n  energyload serve\n  energyload serve --config /etc/energyload/config.toml\n  ENERGYLOAD_SERVER_LISTEN=0.0.0.0:8080 energyload serve"
    )]
    Serve,
    /// Appliance + eSight simulator + sample traffic on localhost, for a first look.
    #[command(after_help = "Examples:\n  energyload demo\n  energyload demo --fresh --listen 127.0.0.1:9000")]
    Demo(demo::DemoArgs),
    /// Apply pending database migrations and exit.
    #[command(
        after_help = "Examples:\n  energyload migrate\n  energyload migrate --config /etc/energyload/config.toml"
    )]
    Migrate,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a consistent snapshot of the database to FILE (safe while `serve` runs).
    #[command(after_help = "Examples:\n  energyload backup /var/backups/energyload-$(date +%F).db")]
    Backup {
        /// Where to write the snapshot.
        file: PathBuf,
    },
    /// Replace the database with a backup FILE (offline: stop `serve` first).
    #[command(after_help = RESTORE_HELP)]
    Restore {
        /// The backup to restore (written by `energyload backup` or the backup endpoint).
        #[arg(required_unless_present = "from_replica", conflicts_with = "from_replica")]
        file: Option<PathBuf>,
        /// Restore from Litestream's replica instead: its URL (s3://…, sftp://…,
        /// file:///…) or directory; needs `litestream` on the PATH.
        #[arg(long, value_name = "URL|DIR")]
        from_replica: Option<String>,
        /// With --from-replica: the state at this time (RFC 3339, e.g. 2026-12-03T13:00:00Z).
        #[arg(long, value_name = "TIME", requires = "from_replica")]
        at: Option<String>,
    },
    /// Run the eSight simulator alone (token, catalog, consumption, fault injection).
    #[command(name = "esight-sim")]
    EsightSim(Box<crate::simulator::cli::EsightSimArgs>),
    /// Manage users.
    #[command(subcommand)]
    User(identity::UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(identity::ApiKeyCommand),
    /// Verify or export the audit log.
    #[command(subcommand)]
    Audit(identity::AuditCommand),
    /// Manage the JWT signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print version, git commit and build time.
    #[command(after_help = "Examples:\n  energyload version")]
    Version,
}

/// `restore --help`: what it does, the signing-key decision, examples.
const RESTORE_HELP: &str = "\
What it does:
  Refuses while a server holds the data directory. Checks FILE: a SQLite file that passes
  `PRAGMA integrity_check`, has energyload's meta table and a schema version this binary knows
  (an older one is migrated now). Renews the signing keys, appends a `backup_restored` event to
  the restored audit chain, keeps the current database (and its WAL) as
  energyload.db.replaced-<UTC time> in the data directory, and installs the backup in its place.
  It prints the paths, the schema version and counts of users, API keys, audit events and
  messages.

After a restore:
  Users, roles, passwords, API keys, messages and the audit log are as they were at the backup
  (plus the restore's audit event): API keys created after the backup no longer work, keys
  revoked after it work again (revoke them again if needed).
  Backups never contain the JWT signing keys (files in <data_dir>/signing-keys/). Restore
  replaces them with a new key, so every token issued before the restore is refused and users
  log in again; a token revoked after the backup cannot come back to life.

Examples:
  systemctl stop energyload
  energyload restore /var/backups/energyload-2026-01-31.db
  systemctl start energyload
  energyload restore backup.db --config /etc/energyload/config.toml

From Litestream's replica (disaster recovery; stop litestream first, see README \"Lose the VM, lose
nothing\"): runs `litestream restore` into a temporary file, then the same verified restore.
  energyload restore --from-replica /mnt/replica/energyload
  energyload restore --from-replica s3://bucket/energyload --at 2026-12-03T13:00:00Z";

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new signing key; the old one stays valid until its tokens expire.
    #[command(after_help = "Examples:\n  energyload keys rotate")]
    Rotate,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted); exit 1 if it is invalid.
    #[command(
        after_help = "Examples:\n  energyload config check\n  ENERGYLOAD_LOG_LEVEL=debug energyload config check --config my.toml"
    )]
    Check,
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            use crate::build_info::{BUILT, COMMIT, VERSION};
            println!("energyload {VERSION} (commit {COMMIT}, built {BUILT})");
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check) => config_cmd::check(cli.config.as_deref()),
        Command::EsightSim(args) => crate::simulator::cli::run(&args),
        Command::Demo(args) => demo::run(&args),
        command => {
            let loaded = match load_config(cli.config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match command {
                Command::Serve => serve::run(loaded),
                Command::Migrate => migrate::run(&loaded),
                Command::Backup { file } => backup::run(&loaded, &file),
                Command::Restore { file, from_replica, at } => match (file, from_replica) {
                    (Some(file), None) => restore::run(&loaded, &file),
                    (_, Some(replica)) => restore::run_from_replica(&loaded, &replica, at.as_deref()),
                    (None, None) => unreachable!("clap requires FILE or --from-replica"),
                },
                Command::User(c) => {
                    let changes = c.changes_state();
                    confirmed_on_replica(&loaded, changes, identity::user(&loaded, c))
                }
                Command::Apikey(c) => {
                    let changes = c.changes_state();
                    confirmed_on_replica(&loaded, changes, identity::apikey(&loaded, c))
                }
                Command::Audit(c) => identity::audit_cmd(&loaded, c),
                Command::Keys(KeysCommand::Rotate) => identity::rotate_keys(&loaded),
                Command::Version | Command::Config(_) | Command::EsightSim(_) | Command::Demo(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// Exit code of a change stored locally that the replica did not confirm
/// (`EX_TEMPFAIL`: try again later; see README, "Lose the VM, lose nothing").
const EXIT_UNCONFIRMED: u8 = 75;

/// After a successful command that changed users or keys: with
/// `replication.acknowledge = "replicated"`, success only once the replica
/// holds the change, like the server's answers; exit 75 when it did not
/// confirm within `replication.timeout`.
fn confirmed_on_replica(loaded: &LoadedConfig, changed: bool, code: ExitCode) -> ExitCode {
    if !changed || code != ExitCode::SUCCESS {
        return code;
    }
    let config = &loaded.config;
    match crate::replication::confirm_change(&config.replication, &config.storage.data_dir) {
        Ok(()) => code,
        Err(e) => {
            eprintln!(
                "error: the change is stored in the local database, but {e}; Litestream replicates it once it runs again"
            );
            ExitCode::from(EXIT_UNCONFIRMED)
        }
    }
}

/// Loads the configuration or prints the one-line error and returns exit 2.
fn load_config(explicit: Option<&std::path::Path>) -> Result<LoadedConfig, ExitCode> {
    config::load(explicit, std::env::vars()).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// Prints an error in one line and returns exit code 1.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
