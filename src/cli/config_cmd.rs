//! `energyload config check`: prints the effective configuration with every
//! secret redacted.

use std::path::Path;
use std::process::ExitCode;

/// Prints the effective config; exit 0 when valid, 1 with the error line otherwise.
pub fn check(explicit: Option<&Path>) -> ExitCode {
    match crate::config::load(explicit, std::env::vars()) {
        Ok(loaded) => {
            match &loaded.file {
                Some(f) => println!(
                    "# effective configuration (file {} + defaults + environment)",
                    f.display()
                ),
                None => {
                    println!("# effective configuration (defaults + environment; no config file)")
                }
            }
            match toml::to_string(&loaded.config) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => super::fail(format!("cannot print the configuration: {e}")),
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
