//! `energyload restore FILE`: replaces the database with a backup while no
//! server runs. The file checks, the migration and the crash-safe swap are
//! `storage::restore`; this command holds the data-directory lock, renews
//! the JWT signing keys, audits the restore in the restored chain and prints
//! what was done (paths, versions, counts; never secrets).

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
    let data_dir = &config.storage.data_dir;
    storage::create_private_dir(data_dir)?;
    let lock = DataDirLock::acquire(data_dir).map_err(|e| match e {
        StorageError::Locked { .. } => RestoreError::InUse(e),
        other => RestoreError::Storage(other),
    })?;
    let token_ttl = config.auth.token_ttl.get();
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    storage::restore(&lock, &file, |conn, plan| {
        renew_signing_keys(data_dir, token_ttl)?;
        record_blocking(conn, restored_event(plan)).map_err(RestoreError::from)
    })
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
