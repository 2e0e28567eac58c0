//! An exclusive lock on the data directory, so two `serve` processes never
//! open the same database. CLI commands that edit data (users, keys) do not
//! take it: SQLite's own locking serialises them with a running server.
//!
//! The lock file holds the holder's pid and command (`1234 energyload
//! serve`), so a refused process can say who is in the way.

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
            let mut content = String::new();
            let _ = file.read_to_string(&mut content);
            return Err(StorageError::Locked { path: data_dir.to_path_buf(), holder: holder(&content) });
        }
        file.set_len(0).map_err(io("cannot write lock file"))?;
        file.rewind().map_err(io("cannot write lock file"))?;
        writeln!(file, "{} {}", std::process::id(), command_label()).map_err(io("cannot write lock file"))?;
        Ok(Self { _file: file, path })
    }

    /// Fails with [`StorageError::Locked`] (naming the holder) when some
    /// process holds the lock on `data_dir` now; a directory that does not
    /// exist yet is free.
    pub fn check_free(data_dir: &Path) -> Result<(), StorageError> {
        if !data_dir.is_dir() {
            return Ok(());
        }
        Self::acquire(data_dir).map(drop)
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

/// The holder as written in its lock file: `process 1234 (energyload
/// serve)`; older files hold the pid alone.
fn holder(content: &str) -> String {
    let line = content.lines().next().unwrap_or_default().trim();
    let (pid, command) = line.split_once(' ').unwrap_or((line, ""));
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return "another energyload process".into();
    }
    let command: String = command.chars().filter(|c| !c.is_control()).take(80).collect();
    match command.trim() {
        "" => format!("process {pid}"),
        command => format!("process {pid} ({command})"),
    }
}

/// This process in words: the program's file name and its subcommand,
/// e.g. `energyload serve` (options and their values left out).
fn command_label() -> String {
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let program = args.next().unwrap_or_default();
    let program =
        Path::new(&program).file_name().map_or("energyload".into(), |n| n.to_string_lossy().into_owned());
    let mut after_option = false;
    let subcommand = args.find(|a| {
        let takes_value = a == "--config";
        let is_word = !a.starts_with('-') && !after_option;
        after_option = takes_value;
        is_word
    });
    match subcommand {
        Some(sub) => format!("{program} {sub}"),
        None => program,
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
        let pid = std::process::id();
        assert!(
            err.to_string().ends_with(&format!("is in use by process {pid} ({})", command_label())),
            "{err}"
        );
        assert!(DataDirLock::check_free(dir.path()).is_err());
        drop(first);
        assert!(DataDirLock::check_free(dir.path()).is_ok());
        assert!(DataDirLock::acquire(dir.path()).is_ok());
        assert!(DataDirLock::check_free(&dir.path().join("not-yet")).is_ok());
        assert!(!dir.path().join("not-yet").exists(), "checking creates nothing");
    }

    #[test]
    fn the_holder_is_read_from_new_and_old_lock_files() {
        assert_eq!(holder("1234 energyload serve\n"), "process 1234 (energyload serve)");
        assert_eq!(holder("1234\n"), "process 1234");
        assert_eq!(holder(""), "another energyload process");
        assert_eq!(holder("x y"), "another energyload process");
        assert_eq!(holder("7 a\u{1b}[2Jb\n"), "process 7 (a[2Jb)", "no terminal escapes");
    }
}
