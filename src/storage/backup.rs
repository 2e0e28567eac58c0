//! Consistent online snapshots with SQLite's backup API. The whole database is
//! copied in one step (one read transaction), so the copy is a single point in
//! time even while the server keeps writing; it is written to a temporary file,
//! synced, checked and renamed into place, so a crash never leaves a half file
//! under the target name.
//!
//! A snapshot holds every user, hash and message: the temporary file is
//! created `0600` before SQLite opens it (SQLite keeps an existing file's mode
//! and gives its journal the same), so the caller's umask never matters; it is
//! removed on every error path, and temporary files left by a process that
//! died are removed by the next snapshot to the same place.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::backup::Backup;

use super::StorageError;

/// Directory under the data directory for snapshots being downloaded.
pub const DOWNLOADS_DIR: &str = "backups-tmp";

fn io(context: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |source| StorageError::Io { context, source }
}

/// The temporary name of a snapshot to `dest` written by process `pid`.
fn partial_name(file_name: &str, pid: u32) -> String {
    format!(".{file_name}.partial-{pid}")
}

/// Removes `path` and the journal SQLite may have left beside it.
fn remove_with_journal(path: &Path) {
    let _ = std::fs::remove_file(path);
    let mut journal = path.as_os_str().to_owned();
    journal.push("-journal");
    let _ = std::fs::remove_file(PathBuf::from(journal));
}

/// Removes the temporary files of snapshots to `dest` whose process is gone.
fn remove_stale_partials(dest: &Path, file_name: &str) {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!(".{file_name}.partial-");
    let prefix = prefix.as_str();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else { continue };
        let pid = pid.trim_end_matches("-journal");
        let alive = pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes a snapshot of `src` to `dest` (mode `0600`) and returns its size
/// in bytes.
pub fn snapshot_to_file(src: &Connection, dest: &Path) -> Result<u64, StorageError> {
    let file_name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        io(format!("{} is not a file path", dest.display()))(std::io::ErrorKind::InvalidInput.into())
    })?;
    remove_stale_partials(dest, file_name);
    let tmp = dest.with_file_name(partial_name(file_name, std::process::id()));
    remove_with_journal(&tmp);
    let result = write_snapshot(src, &tmp, dest);
    if result.is_err() {
        remove_with_journal(&tmp);
    }
    result
}

fn write_snapshot(src: &Connection, tmp: &Path, dest: &Path) -> Result<u64, StorageError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io(format!("cannot create {}", tmp.display())))?;
    // The mode given at creation is masked by the umask; set it outright.
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("cannot restrict {}", tmp.display())))?;
    let mut out = Connection::open(tmp)?;
    {
        let backup = Backup::new(src, &mut out)?;
        // All pages in one step: one read transaction, one point in time.
        backup.run_to_completion(i32::MAX, Duration::ZERO, None)?;
    }
    // A standalone file: no WAL beside it.
    out.pragma_update(None, "journal_mode", "DELETE")?;
    let check: String = out.pragma_query_value(None, "integrity_check", |r| r.get(0))?;
    if check != "ok" {
        return Err(StorageError::Io {
            context: format!("snapshot failed its integrity check: {check}"),
            source: std::io::ErrorKind::InvalidData.into(),
        });
    }
    drop(out);
    let f = std::fs::File::open(tmp).map_err(io(format!("cannot open {}", tmp.display())))?;
    f.sync_all().map_err(io(format!("cannot sync {}", tmp.display())))?;
    let len = f.metadata().map_err(io(format!("cannot stat {}", tmp.display())))?.len();
    std::fs::rename(tmp, dest).map_err(io(format!("cannot move snapshot to {}", dest.display())))?;
    Ok(len)
}

/// Empties the download directory (`<data_dir>/backups-tmp`): at start no
/// download is in progress, so whatever is there was left by a process that
/// died mid-download.
pub fn clear_downloads(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join(DOWNLOADS_DIR)) else { return };
    for entry in entries.flatten() {
        if let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(error = %e, path = %entry.path().display(), "cannot remove a stale backup file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("src.db")).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);").unwrap();
        (dir, c)
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".partial-"))
            .collect()
    }

    #[test]
    fn a_snapshot_is_private_whatever_the_umask_and_leaves_no_temp_file() {
        let (dir, src) = source();
        let dest = dir.path().join("out.db");
        // The process umask cannot be changed here without racing other
        // tests; the CLI test runs under umask 022. This checks the mode.
        snapshot_to_file(&src, &dest).unwrap();
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(leftovers(dir.path()).is_empty());
        let n: i64 =
            Connection::open(&dest).unwrap().query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_failed_rename_removes_the_temp_file() {
        let (dir, src) = source();
        let dest = dir.path().join("taken");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("keep"), b"x").unwrap();
        assert!(snapshot_to_file(&src, &dest).is_err());
        assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    }

    #[test]
    fn temp_files_of_dead_processes_are_swept_and_live_ones_kept() {
        let (dir, src) = source();
        let dest = dir.path().join("out.db");
        // No process has pid 0 in /proc; pid 1 always exists.
        std::fs::write(dir.path().join(".out.db.partial-0"), b"half").unwrap();
        std::fs::write(dir.path().join(".out.db.partial-0-journal"), b"half").unwrap();
        std::fs::write(dir.path().join(".out.db.partial-1"), b"live").unwrap();
        std::fs::write(dir.path().join(".other.db.partial-0"), b"not ours").unwrap();
        snapshot_to_file(&src, &dest).unwrap();
        let mut left = leftovers(dir.path());
        left.sort();
        assert_eq!(left, vec![".other.db.partial-0".to_string(), ".out.db.partial-1".to_string()]);
    }
}
