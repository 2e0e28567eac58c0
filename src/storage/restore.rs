//! Offline restore of a backup into the data directory, crash-safe.
//!
//! The caller holds the data-directory lock (no server runs). The backup is
//! copied into the data directory under a temporary name and only that copy
//! is ever opened: it must be a SQLite file that passes
//! `PRAGMA integrity_check`, has energyload's `meta` table and a schema
//! version this binary knows. An older schema is migrated in the copy, the
//! caller appends its audit event to the copy, and the copy is synced. Only
//! then is the current database touched: its WAL is checkpointed, it gets a
//! second name `energyload.db.replaced-<UTC stamp>` (a hard link, so
//! `energyload.db` never stops existing), its `-wal`/`-shm`/`-journal`
//! files move to the same new name (SQLite pairs them by name, so the old
//! database keeps its own WAL and the restored one never sees it), the copy
//! is renamed over `energyload.db` and the directory is synced. A crash at
//! any point leaves either the old database or the restored one in place.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;
use time::macros::format_description;

use super::messages::MessageStatus;
use super::{DB_FILE, DataDirLock, StorageError, migrations};

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Name of the staged copy in the data directory, before the process id.
const STAGING_PREFIX: &str = ".energyload.db.restoring-";

/// Files SQLite keeps beside a database, paired with it by name.
const SIDECARS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// What is known about a restore before the new database is installed.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The backup file as given.
    pub source: PathBuf,
    /// The backup's schema version before any migration.
    pub backup_version: u32,
    /// Where the current database will be kept, when there is one.
    pub kept_aside: Option<PathBuf>,
}

/// Row counts of the restored database (no content).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredCounts {
    /// Users, any status.
    pub users: i64,
    /// API keys, including revoked ones.
    pub api_keys: i64,
    /// Audit events (the restore's own included).
    pub audit_events: i64,
    /// Messages per status, by status name.
    pub messages_by_status: Vec<(String, i64)>,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The facts known before installing.
    pub plan: RestorePlan,
    /// The installed database (`<data_dir>/energyload.db`).
    pub installed: PathBuf,
    /// Its schema version now (migrated to this binary's).
    pub schema_version: u32,
    /// Its contents, counted.
    pub counts: RestoredCounts,
    /// False when the database kept aside could not be checkpointed (it is
    /// damaged) and so keeps its `-wal`/`-shm` files beside it.
    pub aside_standalone: bool,
}

/// Replaces the database of the locked data directory with the backup at
/// `source`. `before_install` runs on the verified and migrated copy just
/// before it is installed (the CLI appends the audit event there); an error
/// from it, like any error before the swap, leaves the current database
/// untouched.
pub fn restore<E: From<StorageError>>(
    held: &DataDirLock,
    source: &Path,
    before_install: impl FnOnce(&mut Connection, &RestorePlan) -> Result<(), E>,
) -> Result<RestoreReport, E> {
    let data_dir = held.data_dir();
    let installed = data_dir.join(DB_FILE);
    remove_stale_staging(data_dir);
    let staging = data_dir.join(format!("{STAGING_PREFIX}{}", std::process::id()));
    let result = (|| -> Result<RestoreReport, E> {
        check_magic(source)?;
        check_no_wal_beside(source)?;
        std::fs::copy(source, &staging).map_err(io(format!(
            "cannot copy {} into {}",
            source.display(),
            data_dir.display()
        )))?;
        restrict_permissions(&staging)?;
        let mut conn = open_staging(&staging, source)?;
        let backup_version = verify(&conn, source)?;
        migrations::apply(&mut conn)?;
        let present = installed.exists() || SIDECARS.iter().any(|s| with_suffix(&installed, s).exists());
        let kept_aside = present.then(|| unused_aside_name(&installed));
        let plan = RestorePlan { source: source.to_path_buf(), backup_version, kept_aside };
        before_install(&mut conn, &plan)?;
        let counts = count_rows(&conn)?;
        let schema_version = migrations::status(&conn)?.current;
        conn.close().map_err(|(_, e)| StorageError::Sqlite(e))?;
        sync_file(&staging)?;
        let aside_standalone = install(&staging, &installed, plan.kept_aside.as_deref())?;
        Ok(RestoreReport { plan, installed: installed.clone(), schema_version, counts, aside_standalone })
    })();
    if result.is_err() {
        remove_with_sidecars(&staging);
    }
    result
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |source| StorageError::Io { context, source }
}

fn not_a_backup(source: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::NotABackup { path: source.to_path_buf(), reason: reason.into() }
}

/// Refuses anything that is not a SQLite file before copying it.
fn check_magic(source: &Path) -> Result<(), StorageError> {
    let mut file = File::open(source).map_err(io(format!("cannot read {}", source.display())))?;
    let mut head = [0u8; 16];
    match file.read_exact(&mut head) {
        Ok(()) if &head == SQLITE_MAGIC => Ok(()),
        Ok(()) => Err(not_a_backup(source, "not a SQLite database")),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(not_a_backup(source, "not a SQLite database (too short)"))
        }
        Err(e) => Err(io(format!("cannot read {}", source.display()))(e)),
    }
}

/// Refuses a database whose last commits are in a `-wal` file beside it:
/// copying the main file alone would silently drop them.
fn check_no_wal_beside(source: &Path) -> Result<(), StorageError> {
    let wal = with_suffix(source, "-wal");
    match std::fs::metadata(&wal) {
        Ok(m) if m.len() > 0 => Err(not_a_backup(
            source,
            format!(
                "{} beside it holds commits not in the file; use a file written by `energyload backup`",
                wal.display()
            ),
        )),
        _ => Ok(()),
    }
}

fn restrict_permissions(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("cannot set permissions of {}", path.display())))
}

/// Opens the staged copy as a standalone file: rollback journal, so that
/// everything written to it is in the one file when it is closed.
fn open_staging(staging: &Path, source: &Path) -> Result<Connection, StorageError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(staging, flags)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get::<_, String>(0))
        .map_err(|e| not_a_backup(source, format!("cannot be opened: {e}")))?;
    Ok(conn)
}

/// Integrity, energyload's `meta` table, a known schema version; returns it.
fn verify(conn: &Connection, source: &Path) -> Result<u32, StorageError> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check(5)")
        .map_err(|e| not_a_backup(source, format!("cannot be read: {e}")))?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| not_a_backup(source, format!("cannot be read: {e}")))?;
    if problems != ["ok"] {
        return Err(not_a_backup(source, format!("integrity check failed: {}", problems.join("; "))));
    }
    let has_meta: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Err(not_a_backup(source, "not an energyload database (no meta table)"));
    }
    let status = migrations::status(conn)?;
    if status.current > status.latest {
        let reason = format!(
            "its schema version {} is newer than this binary supports ({}); restore it with a newer energyload",
            status.current, status.latest
        );
        return Err(not_a_backup(source, reason));
    }
    Ok(status.current)
}

fn count_rows(conn: &Connection) -> Result<RestoredCounts, StorageError> {
    let count = |table: &str| -> Result<i64, StorageError> {
        Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
    };
    let mut stmt = conn.prepare("SELECT status, count(*) FROM messages GROUP BY status ORDER BY status")?;
    let coded: Vec<(i64, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut messages_by_status = coded
        .into_iter()
        .map(|(code, n)| Ok((MessageStatus::from_code(code)?.as_str().to_owned(), n)))
        .collect::<Result<Vec<(String, i64)>, StorageError>>()?;
    messages_by_status.sort();
    Ok(RestoredCounts {
        users: count("users")?,
        api_keys: count("api_keys")?,
        audit_events: count("audit_events")?,
        messages_by_status,
    })
}

/// `energyload.db.replaced-20260123T101500Z`, with `-N` added when a
/// restore in the same second already used the name.
fn unused_aside_name(installed: &Path) -> PathBuf {
    let stamp = OffsetDateTime::now_utc()
        .format(format_description!("[year][month][day]T[hour][minute][second]Z"))
        .unwrap_or_default();
    let base = format!("{DB_FILE}.replaced-{stamp}");
    (0..)
        .map(|n| if n == 0 { base.clone() } else { format!("{base}-{n}") })
        .map(|name| installed.with_file_name(name))
        .find(|p| !p.exists() && SIDECARS.iter().all(|s| !with_suffix(p, s).exists()))
        .expect("an unused name")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Puts the current database and its sidecar files (if any) aside under
/// `aside` and the staged copy in its place; see the module comment for the
/// order and why. Returns false when the database kept aside still has its
/// WAL beside it.
fn install(staging: &Path, installed: &Path, aside: Option<&Path>) -> Result<bool, StorageError> {
    let mut standalone = true;
    // The main file first gets its second name, then its sidecars move: a
    // crash in between leaves `energyload.db` in place (without a WAL that
    // a failed checkpoint left; the set kept aside is complete).
    if let Some(aside) = aside {
        if installed.exists() {
            standalone = checkpoint(installed);
            std::fs::hard_link(installed, aside).map_err(io(format!(
                "cannot keep {} as {}",
                installed.display(),
                aside.display()
            )))?;
        }
        for suffix in SIDECARS {
            let sidecar = with_suffix(installed, suffix);
            if sidecar.exists() {
                std::fs::rename(&sidecar, with_suffix(aside, suffix))
                    .map_err(io(format!("cannot move {} aside", sidecar.display())))?;
            }
        }
    }
    std::fs::rename(staging, installed)
        .map_err(io(format!("cannot move the restored database to {}", installed.display())))?;
    let dir = installed.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync directory {}", dir.display())))?;
    Ok(standalone)
}

/// Folds the current database's WAL into its main file and leaves it a
/// single standalone file, so the copy kept aside opens anywhere. Best
/// effort: a database too damaged for this keeps its WAL beside it (false).
fn checkpoint(db: &Path) -> bool {
    let result = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE).and_then(|c| {
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        c.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get::<_, String>(0))?;
        c.close().map_err(|(_, e)| e)
    });
    result.is_ok()
}

fn sync_file(path: &Path) -> Result<(), StorageError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io(format!("cannot sync {}", path.display())))
}

/// Removes copies staged by restores that crashed (the lock is held, so no
/// other restore is running).
fn remove_stale_staging(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn remove_with_sidecars(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in SIDECARS {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}

#[cfg(test)]
mod tests;
