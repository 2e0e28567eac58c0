//! `energyload migrate`: applies pending schema migrations.

use std::process::ExitCode;

use crate::config::LoadedConfig;
use crate::storage::Storage;

/// Migrates the database in the configured data directory.
pub fn run(loaded: &LoadedConfig) -> ExitCode {
    let result = Storage::open(&loaded.config.storage).and_then(|s| {
        let before = s.schema_status()?;
        Ok((before, s.migrate()?))
    });
    match result {
        Ok((before, after)) if before.current == after.current => {
            println!("schema version {} is current", after.current);
            ExitCode::SUCCESS
        }
        Ok((before, after)) => {
            println!(
                "migrated schema from version {} to {}",
                before.current, after.current
            );
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(e),
    }
}
