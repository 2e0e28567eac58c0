//! The inbox's blocking file work: listing, reading with a size cap, and
//! moving without ever overwriting. Called only from `spawn_blocking`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustix::fs::{CWD, OFlags, RenameFlags};
use rustix::io::Errno;

use super::{ACCEPTED_DIR, FAILED_DIR, InboxError};
use crate::domain::message::{Message, ValidationCode, ValidationError};
use crate::storage::messages::NewMessage;

/// Numbered names tried when a target name is taken (`a.json`, `a.1.json`, …).
const MAX_SUFFIX: u32 = 10_000;

/// A matching file found in the inbox.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    /// Its name (UTF-8; other names are skipped).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Its size when listed.
    pub len: u64,
}

/// What reading one file gave.
pub(super) enum ReadOutcome {
    /// A valid message, ready to store.
    Valid(NewMessage),
    /// Not a valid message.
    Invalid(ValidationError),
    /// Over the size limit; not read.
    TooLarge,
}

/// Where a file goes after the commit.
pub(super) enum Destination {
    /// `accepted/`.
    Accepted,
    /// `failed/<code>/`; the code is one of ours, a safe directory name.
    Failed(String),
}

/// Regular `*.json` files directly in `dir` (no dot files, no symlinks), in
/// name order, optionally only those starting with `prefix`.
pub(super) fn list(dir: &Path, prefix: Option<&str>) -> Result<Vec<Listed>, InboxError> {
    let fail = |source| InboxError::Io { path: dir.to_owned(), source };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(fail)?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!(dir = %dir.display(), "inbox: skipping a file whose name is not UTF-8");
            continue;
        };
        let matches =
            !name.starts_with('.') && name.ends_with(".json") && prefix.is_none_or(|p| name.starts_with(p));
        // `DirEntry::metadata` does not follow symlinks: a link is not a file.
        match entry.metadata() {
            Ok(meta) if matches && meta.is_file() => {
                out.push(Listed { name, path: entry.path(), len: meta.len() })
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads and validates each file. Files that vanished (another import
/// moved them) are dropped silently; unreadable ones are logged and left.
pub(super) fn read_all(chunk: Vec<Listed>, max_bytes: u64) -> Vec<(Listed, ReadOutcome)> {
    let mut out = Vec::with_capacity(chunk.len());
    for file in chunk {
        let outcome = match read_capped(&file.path, max_bytes) {
            Ok(Some(raw)) => match crate::domain::message::check_readable(&raw) {
                Err(e) => {
                    ReadOutcome::Invalid(ValidationError::new(ValidationCode::InvalidJson, e.to_string()))
                }
                Ok(()) => match Message::from_bytes(Bytes::from(raw)) {
                    Ok(message) => ReadOutcome::Valid(crate::ingest::to_new_message(message)),
                    Err(e) => ReadOutcome::Invalid(e),
                },
            },
            Ok(None) => ReadOutcome::TooLarge,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(file = %file.path.display(), error = %e, "inbox: cannot read file; left in place");
                continue;
            }
        };
        out.push((file, outcome));
    }
    out
}

/// The file's bytes, or `None` when it holds more than `max_bytes` (then
/// at most `max_bytes + 1` bytes are read). Opens without following a
/// symlink and without blocking on a FIFO swapped in since the listing.
fn read_capped(path: &Path, max_bytes: u64) -> io::Result<Option<Vec<u8>>> {
    let flags = (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits();
    let file: File = OpenOptions::new().read(true).custom_flags(flags as i32).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > max_bytes {
        return Ok(None);
    }
    let mut raw = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut raw)?;
    Ok((raw.len() as u64 <= max_bytes).then_some(raw))
}

/// Moves each file to its destination under `dir`, creating directories as
/// needed. A failure is logged and leaves the file for the next import,
/// which finds it stored already.
pub(super) fn move_all(dir: &Path, moves: Vec<(PathBuf, Destination)>) {
    let mut created = HashSet::new();
    for (from, destination) in moves {
        let target_dir = match &destination {
            Destination::Accepted => dir.join(ACCEPTED_DIR),
            Destination::Failed(code) => dir.join(FAILED_DIR).join(code),
        };
        let moved = (|| {
            if !created.contains(&target_dir) {
                fs::create_dir_all(&target_dir)?;
                created.insert(target_dir.clone());
            }
            move_without_overwrite(&from, &target_dir)
        })();
        if let Err(e) = moved {
            tracing::warn!(
                file = %from.display(), to = %target_dir.display(), error = %e,
                "inbox: cannot move file; the next import will move it"
            );
        }
    }
}

/// Moves `from` into `target_dir` under its own name, or `<stem>.<n>.json`
/// when that is taken. Returns the new path.
fn move_without_overwrite(from: &Path, target_dir: &Path) -> io::Result<PathBuf> {
    let name = from.file_name().and_then(|n| n.to_str()).unwrap_or("file.json");
    let (stem, ext) = name.strip_suffix(".json").map_or((name, ""), |stem| (stem, ".json"));
    for n in 0..MAX_SUFFIX {
        let target = if n == 0 { target_dir.join(name) } else { target_dir.join(format!("{stem}.{n}{ext}")) };
        match rename_no_replace(from, &target) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(ErrorKind::AlreadyExists, "no free name in the target directory"))
}

/// `rename` that fails with `AlreadyExists` instead of replacing `to`:
/// `renameat2(RENAME_NOREPLACE)`, or link + unlink on file systems without it.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::INVAL || e == Errno::NOSYS => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}
