//! `energyload backup FILE`: a consistent online snapshot of the database,
//! safe while `serve` runs.

use std::path::Path;
use std::process::ExitCode;

use crate::config::LoadedConfig;
use crate::storage::{DB_FILE, Storage, snapshot_to_file};

/// Writes the snapshot and reports its size.
pub fn run(loaded: &LoadedConfig, dest: &Path) -> ExitCode {
    let db = loaded.config.storage.data_dir.join(DB_FILE);
    if !db.is_file() {
        return super::fail(format!("there is no database at {}", db.display()));
    }
    let result =
        Storage::open(&loaded.config.storage).and_then(|s| snapshot_to_file(&*s.conn()?, dest));
    match result {
        Ok(bytes) => {
            println!("backup written to {} ({bytes} bytes)", dest.display());
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(e),
    }
}
