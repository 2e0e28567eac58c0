//! The inbox: a spool directory (`inbox.dir`) whose `*.json` files are
//! imported as messages — the compat `sendJsons` / `sendJson/{file_name}`
//! endpoints and the optional poller. It replaces the original service's
//! "processed" bucket.
//!
//! Order of work, per chunk of files: read and validate, commit every valid
//! message through the ingest writer, and only then move each file to
//! `accepted/` or `failed/<Code>/`. A crash between the commit and the move
//! leaves the file in place; the next import stores nothing new (ingest is
//! idempotent on `header.messageId`, so the answer is `Duplicate`) and moves
//! it. Moves are therefore not fsynced: losing one only repeats that step.
//!
//! Only regular files directly in the directory whose names end in `.json`
//! and do not start with `.` are imported; producers should write under
//! another name (e.g. `.name.json.tmp`) and rename when done, so that a
//! half-written file is never picked up.

mod files;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::ser::SerializeStruct;
use tokio::sync::watch;

use crate::storage::ingest::{IngestError, IngestWriter};
use crate::storage::messages::StoreOutcome;
use files::{Destination, Listed, ReadOutcome};

/// Files read, committed and moved per round at most.
pub const CHUNK_FILES: usize = 1000;
/// Bytes read per round at most (a single larger file still goes alone).
const CHUNK_BYTES: u64 = 64 * 1024 * 1024;
/// Subdirectory for imported files.
pub const ACCEPTED_DIR: &str = "accepted";
/// Subdirectory for refused files, one level below per code.
pub const FAILED_DIR: &str = "failed";
/// Code of a file over the size limit.
pub const TOO_LARGE_CODE: &str = "RequestEntityTooLarge";
/// Code of a file whose messageId was stored before with other content.
pub const CONFLICT_CODE: &str = "Conflict";

/// Why an import did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// A `sendJson/{file_name}` prefix that could leave the directory or
    /// is empty; the handler answers `400`.
    #[error("invalid file name: {0}")]
    InvalidPrefix(&'static str),
    /// The inbox directory could not be listed.
    #[error("inbox directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The ingest writer refused the batch; the chunk's files stay in place.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A blocking file task panicked or was cancelled.
    #[error("an inbox file task failed")]
    TaskFailed,
}

/// A validated `sendJson/{file_name}` prefix: non-empty, no `/`, `\`, `..`
/// or NUL, so it can only match names inside the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNamePrefix(String);

impl FileNamePrefix {
    /// Checks `raw`.
    pub fn parse(raw: &str) -> Result<Self, InboxError> {
        let refuse = |why| Err(InboxError::InvalidPrefix(why));
        if raw.is_empty() {
            return refuse("it must not be empty");
        }
        if raw.contains(['/', '\\']) {
            return refuse("it must not contain / or \\");
        }
        if raw.contains("..") {
            return refuse("it must not contain ..");
        }
        if raw.contains('\0') {
            return refuse("it must not contain NUL");
        }
        Ok(Self(raw.to_owned()))
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an import did; serialises as the contract's
/// `{"processed": N, "accepted": [...], "rejected": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Every matching file handled: accepted plus rejected.
    pub processed: usize,
    /// Files stored (or found stored before), in name order.
    pub accepted: Vec<ImportedFile>,
    /// Files refused, in name order.
    pub rejected: Vec<RejectedFile>,
}

/// A file whose message is stored. Serialises like an accepted item of
/// `POST /messages` with `file` in place of `index`:
/// `{"file", "id", "messageId", "status": "pending", "duplicate"}`, the id as
/// a string (64-bit ids exceed JavaScript's exact integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFile {
    /// The file name as found in the inbox (under `accepted/` it may carry a
    /// suffix when that name was taken).
    pub file: String,
    /// Our message id.
    pub id: i64,
    /// `header.messageId`.
    pub message_id: String,
    /// True when the same message had been stored before.
    pub duplicate: bool,
}

impl Serialize for ImportedFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_struct("ImportedFile", 5)?;
        out.serialize_field("file", &self.file)?;
        out.serialize_field("id", &self.id.to_string())?;
        out.serialize_field("messageId", &self.message_id)?;
        out.serialize_field("status", "pending")?;
        out.serialize_field("duplicate", &self.duplicate)?;
        out.end()
    }
}

/// A refused file, now under `failed/<code>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedFile {
    /// The file name.
    pub file: String,
    /// A validation code, [`CONFLICT_CODE`] or [`TOO_LARGE_CODE`].
    pub code: String,
    /// Human-readable reason; never echoes the file's content.
    pub message: String,
}

/// Imports every matching file in `dir` (all `*.json`, or those whose name
/// starts with `prefix`) in name order. Files over `max_file_bytes` are
/// refused without being read. A missing directory is an empty inbox.
///
/// A file that vanishes meanwhile (another import took it) is skipped; one
/// that cannot be read or moved is logged and left for the next import.
pub async fn import(
    dir: &Path,
    prefix: Option<&FileNamePrefix>,
    max_file_bytes: u64,
    writer: &IngestWriter,
) -> Result<ImportReport, InboxError> {
    let listed = {
        let (dir, prefix) = (dir.to_owned(), prefix.cloned());
        blocking(move || files::list(&dir, prefix.as_ref().map(FileNamePrefix::as_str))).await??
    };
    let mut report = ImportReport::default();
    for chunk in chunks(listed, max_file_bytes) {
        import_chunk(dir, chunk, max_file_bytes, writer, &mut report).await?;
    }
    report.rejected.sort_by(|a, b| a.file.cmp(&b.file));
    report.processed = report.accepted.len() + report.rejected.len();
    Ok(report)
}

async fn import_chunk(
    dir: &Path,
    chunk: Vec<Listed>,
    max_file_bytes: u64,
    writer: &IngestWriter,
    report: &mut ImportReport,
) -> Result<(), InboxError> {
    let read = blocking(move || files::read_all(chunk, max_file_bytes)).await?;
    let mut valid = Vec::with_capacity(read.len());
    let mut messages = Vec::with_capacity(read.len());
    let mut refused = Vec::new();
    for (file, outcome) in read {
        match outcome {
            ReadOutcome::Valid(message) => {
                valid.push((file, message.message_id.clone()));
                messages.push(message);
            }
            ReadOutcome::Invalid(e) => refused.push((file, e.code.as_str().to_owned(), e.message)),
            ReadOutcome::TooLarge => {
                let message = format!("the file is larger than {max_file_bytes} bytes");
                refused.push((file, TOO_LARGE_CODE.to_owned(), message));
            }
        }
    }
    let outcomes = if messages.is_empty() { Vec::new() } else { writer.store(messages).await? };

    let mut moves = Vec::with_capacity(valid.len() + refused.len());
    let mut accepted = Vec::with_capacity(valid.len());
    let mut rejected = Vec::with_capacity(refused.len());
    for ((file, message_id), outcome) in valid.into_iter().zip(outcomes) {
        let (id, duplicate) = match outcome {
            StoreOutcome::Inserted(id) => (id, false),
            StoreOutcome::Duplicate(id, _) => (id, true),
            StoreOutcome::Conflict(_) => {
                let message = "a message with this messageId was stored before with different content";
                refused.push((file, CONFLICT_CODE.to_owned(), message.to_owned()));
                continue;
            }
        };
        accepted.push(ImportedFile { file: file.name, id, message_id, duplicate });
        moves.push((file.path, Destination::Accepted));
    }
    for (file, code, message) in refused {
        rejected.push(RejectedFile { file: file.name, code: code.clone(), message });
        moves.push((file.path, Destination::Failed(code)));
    }
    let dir = dir.to_owned();
    blocking(move || files::move_all(&dir, moves)).await?;
    report.accepted.extend(accepted);
    report.rejected.extend(rejected);
    Ok(())
}

/// Splits the listing into rounds of at most [`CHUNK_FILES`] files and about
/// [`CHUNK_BYTES`] to read (oversized files are not read, so count nothing).
fn chunks(listed: Vec<Listed>, max_file_bytes: u64) -> Vec<Vec<Listed>> {
    let mut out: Vec<Vec<Listed>> = Vec::new();
    let mut bytes = 0u64;
    for file in listed {
        let cost = if file.len > max_file_bytes { 0 } else { file.len };
        match out.last_mut() {
            Some(last) if last.len() < CHUNK_FILES && bytes.saturating_add(cost) <= CHUNK_BYTES => {
                bytes += cost;
                last.push(file);
            }
            _ => {
                bytes = cost;
                out.push(vec![file]);
            }
        }
    }
    out
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, InboxError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| InboxError::TaskFailed)
}

/// Imports `dir` every `interval` until `shutdown` turns true (or its sender
/// is dropped), logging a summary whenever files were processed. An import
/// in progress when shutdown comes is finished first. A zero `interval`
/// means off: the task ends at once.
pub fn spawn_poller(
    dir: PathBuf,
    interval: Duration,
    max_file_bytes: u64,
    writer: IngestWriter,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if interval.is_zero() {
            return;
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = ticker.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
            match import(&dir, None, max_file_bytes, &writer).await {
                Ok(r) if r.processed > 0 => tracing::info!(
                    processed = r.processed,
                    accepted = r.accepted.len(),
                    duplicates = r.accepted.iter().filter(|f| f.duplicate).count(),
                    rejected = r.rejected.len(),
                    "inbox imported"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "inbox import failed"),
            }
        }
    })
}
