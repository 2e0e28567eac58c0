//! An exclusive lock on the data directory, so two `serve` processes never
//! open the same database. CLI commands that edit data (users, keys) do not
//! take it: SQLite's own locking serialises them with a running server.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::StorageError;

/// Held for the life of the server; released when dropped or the process dies.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Name of the lock file inside the data directory.
    pub const FILE: &'static str = "energyload.lock";

    /// Takes the lock or reports who holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, StorageError> {
        let path = data_dir.join(Self::FILE);
        let io = |context: &str| {
            let context = format!("{context} {}", path.display());
            move |source| StorageError::Io { context, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("cannot open lock file"))?;
        if file.try_lock().is_err() {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let holder = if pid.is_empty() { String::new() } else { format!(" (pid {pid})") };
            return Err(StorageError::Locked { path: data_dir.to_path_buf(), holder });
        }
        file.set_len(0).map_err(io("cannot write lock file"))?;
        file.rewind().map_err(io("cannot write lock file"))?;
        writeln!(file, "{}", std::process::id()).map_err(io("cannot write lock file"))?;
        Ok(Self { _file: file, path })
    }

    /// True when some process holds the lock on `data_dir` now.
    pub fn is_held(data_dir: &Path) -> bool {
        match Self::acquire(data_dir) {
            Ok(_) => false,
            Err(StorageError::Locked { .. }) => true,
            Err(_) => false,
        }
    }

    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data directory this lock holds.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        assert!(err.to_string().contains(&std::process::id().to_string()));
        drop(first);
        assert!(DataDirLock::acquire(dir.path()).is_ok());
    }
}
