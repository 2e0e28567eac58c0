//! Storage: the SQLite database in `storage.data_dir`, its connection pool,
//! pragmas and schema migrations. Only this module (and its children)
//! contains SQL; callers get small typed functions.

pub mod audit;
mod backup;
pub mod delivery;
mod error;
pub mod identity;
pub mod ids;
pub mod ingest;
mod lock;
mod message_key;
mod message_queries;
pub mod messages;
mod migrations;
#[cfg(test)]
mod query_plans;
pub mod reports;
mod restore;
pub mod retention;
pub mod stored_body;
mod wal_batch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::config::{StorageConfig, Synchronous};

pub use backup::{DOWNLOADS_DIR, clear_downloads, snapshot_to_file};
pub use restore::{RestorePlan, RestoreReport, RestoredCounts, restore};

pub use error::StorageError;
pub use lock::DataDirLock;
pub use migrations::{
    LATEST_VERSION, SchemaStatus, apply_up_to as migrate_up_to, status as migration_status,
};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "energyload.db";

/// A pooled connection.
pub type PooledConn = PooledConnection<SqliteConnectionManager>;

/// The database: a pool of connections with the appliance's pragmas applied.
#[derive(Clone)]
pub struct Storage {
    pool: Pool<SqliteConnectionManager>,
    data_dir: PathBuf,
    sync: &'static str,
    busy: Duration,
}

impl Storage {
    /// Opens (creating if needed) the data directory (mode 0700) and the
    /// database in it. Refuses a database written by a newer binary. Does not
    /// migrate; call [`Storage::migrate`].
    pub fn open(cfg: &StorageConfig) -> Result<Self, StorageError> {
        create_private_dir(&cfg.data_dir)?;
        let path = cfg.data_dir.join(DB_FILE);
        let sync = sync_pragma(cfg.synchronous);
        let busy = cfg.busy_timeout.get();
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .with_init(move |c| configure_connection(c, sync, busy));
        let pool = Pool::builder()
            .max_size(cfg.pool_size)
            .min_idle(Some(1))
            .connection_timeout(busy.max(Duration::from_secs(1)))
            .build(manager)?;
        let storage = Self { pool, data_dir: cfg.data_dir.clone(), sync, busy };
        let status = storage.schema_status()?;
        if status.current > status.latest {
            return Err(StorageError::TooNew { found: status.current, supported: status.latest });
        }
        Ok(storage)
    }

    /// A dedicated connection outside the pool, with the same pragmas, for a
    /// thread that owns its connection (the ingest writer, delivery workers).
    pub fn open_connection(&self) -> Result<Connection, StorageError> {
        self.connect(self.sync, None)
    }

    /// The ingest writer's connection: like [`Storage::open_connection`], and
    /// under `synchronous=FULL` through the [`wal_batch`] VFS, which writes
    /// each commit's WAL frames in one call. (Under `NORMAL` the VFS would
    /// not be safe, see its module comment; the plain VFS is used then.)
    pub fn open_writer_connection(&self) -> Result<Connection, StorageError> {
        if self.sync != sync_pragma(Synchronous::Full) {
            return self.open_connection();
        }
        if let Err(code) = wal_batch::register() {
            tracing::warn!(code, "cannot register the WAL batching VFS; the writer uses the default VFS");
            return self.open_connection();
        }
        self.connect(self.sync, Some(wal_batch::VFS_NAME))
    }

    /// Like [`Storage::open_connection`] with another `synchronous` setting.
    pub fn open_connection_with(&self, sync: Synchronous) -> Result<Connection, StorageError> {
        self.connect(sync_pragma(sync), None)
    }

    /// Opens the database (through `vfs`, else the default VFS) and applies
    /// the connection pragmas.
    fn connect(&self, sync: &str, vfs: Option<&std::ffi::CStr>) -> Result<Connection, StorageError> {
        let mut c = match vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(self.db_path(), OpenFlags::default(), vfs)?,
            None => Connection::open(self.db_path())?,
        };
        configure_connection(&mut c, sync, self.busy)?;
        Ok(c)
    }

    /// A connection from the pool. Blocks: call from a blocking context.
    pub fn conn(&self) -> Result<PooledConn, StorageError> {
        Ok(self.pool.get()?)
    }

    /// Runs `f` with a pooled connection on tokio's blocking pool, so async
    /// code never blocks the executor on SQLite.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|_| StorageError::TaskFailed)?
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of the database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }

    /// Applies pending migrations; returns the status afterwards.
    pub fn migrate(&self) -> Result<SchemaStatus, StorageError> {
        migrations::apply(&mut *self.conn()?)
    }

    /// The schema version of the database and of this binary.
    pub fn schema_status(&self) -> Result<SchemaStatus, StorageError> {
        migrations::status(&*self.conn()?)
    }

    /// Proves the database accepts writes: one durable write to `meta`.
    pub fn probe_write(conn: &Connection) -> Result<(), StorageError> {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('readiness_probe', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [crate::clock::now_millis().to_string()],
        )?;
        Ok(())
    }

    /// Bytes on disk of the database, its WAL and shared-memory files.
    pub fn db_size_bytes(&self) -> u64 {
        let base = self.db_path();
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = base.clone().into_os_string();
                p.push(suffix);
                std::fs::metadata(p).ok()
            })
            .map(|m| m.len())
            .sum()
    }

    /// Bytes the database uses: [`Storage::db_size_bytes`] less the free
    /// pages inside the file, which SQLite reuses before the file grows (so
    /// space freed by retention counts as free again).
    pub fn db_used_bytes(&self, conn: &Connection) -> Result<u64, StorageError> {
        let free_pages: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let free = u64::try_from(free_pages.saturating_mul(page_size)).unwrap_or(0);
        Ok(self.db_size_bytes().saturating_sub(free))
    }

    /// Free bytes available to this process on the data directory's disk.
    pub fn free_disk_bytes(&self) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(&self.data_dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

fn sync_pragma(s: Synchronous) -> &'static str {
    match s {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    }
}

fn configure_connection(c: &mut Connection, sync: &str, busy: Duration) -> rusqlite::Result<()> {
    c.busy_timeout(busy)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", sync)?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.pragma_update(None, "temp_store", "MEMORY")?;
    message_key::register_functions(c)?;
    Ok(())
}

/// Creates `dir` (and parents) readable only by the owner.
pub fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| StorageError::DataDir { path: dir.to_path_buf(), source };
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    }
    let meta = std::fs::metadata(dir).map_err(io)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}
