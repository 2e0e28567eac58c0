//! Consistent online snapshots with SQLite's backup API. The whole database is
//! copied in one step (one read transaction), so the copy is a single point in
//! time even while the server keeps writing; it is written to a temporary file,
//! synced, checked and renamed into place, so a crash never leaves a half file
//! under the target name.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::backup::Backup;

use super::StorageError;

/// Writes a snapshot of `src` to `dest` and returns its size in bytes.
pub fn snapshot_to_file(src: &Connection, dest: &Path) -> Result<u64, StorageError> {
    let io = |context: String| move |source| StorageError::Io { context, source };
    let file_name = dest.file_name().ok_or_else(|| {
        io(format!("{} is not a file path", dest.display()))(
            std::io::ErrorKind::InvalidInput.into(),
        )
    })?;
    let tmp = dest.with_file_name(format!(
        ".{}.partial-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut out = Connection::open(&tmp)?;
        {
            let backup = Backup::new(src, &mut out)?;
            backup.run_to_completion(-1, Duration::ZERO, None)?;
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
        let f = std::fs::File::open(&tmp).map_err(io(format!("cannot open {}", tmp.display())))?;
        f.sync_all()
            .map_err(io(format!("cannot sync {}", tmp.display())))?;
        let len = f
            .metadata()
            .map_err(io(format!("cannot stat {}", tmp.display())))?
            .len();
        std::fs::rename(&tmp, dest)
            .map_err(io(format!("cannot move snapshot to {}", dest.display())))?;
        Ok(len)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
