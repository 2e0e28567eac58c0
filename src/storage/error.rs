//! The storage layer's error type.

use std::path::PathBuf;

/// Anything that can go wrong below the domain: SQLite, the pool, the data
/// directory. Mapped to the contract's error JSON in `http::error` only.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// No pooled connection became free in time.
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// The database was written by a newer binary.
    #[error(
        "database schema version {found} is newer than this binary supports ({supported}); \
         run a newer energyload or restore a backup"
    )]
    TooNew {
        /// The database's `user_version`.
        found: u32,
        /// The newest version this binary knows.
        supported: u32,
    },
    /// A file offered as a backup is not a sound energyload database.
    #[error("{path} is not a usable energyload backup: {reason}")]
    NotABackup {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The data directory cannot be created or read.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process holds the data directory.
    #[error("data directory {path} is in use by {holder}")]
    Locked {
        /// The directory.
        path: PathBuf,
        /// `process 1234 (energyload serve)`, or `another energyload
        /// process` when the lock file does not say.
        holder: String,
    },
    /// An active API key already has this name (ignoring ASCII case).
    #[error("an active API key named {name:?} exists (id {existing_id})")]
    ApiKeyNameTaken {
        /// The name as the existing key has it.
        name: String,
        /// The id of the key that has it.
        existing_id: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Stored data does not decode (a damaged message body).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A blocking task panicked or was cancelled.
    #[error("a database task failed")]
    TaskFailed,
}

impl StorageError {
    /// True when the disk is full or the file is read-only: writes cannot
    /// succeed until an operator acts.
    pub fn is_unwritable(&self) -> bool {
        use rusqlite::ErrorCode::{CannotOpen, DiskFull, ReadOnly, SystemIoFailure};
        matches!(self, Self::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, DiskFull | ReadOnly | SystemIoFailure | CannotOpen))
    }
}
