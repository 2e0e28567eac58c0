//! `energyload config check`: prints the effective configuration with every
//! secret redacted, after checking what `serve` would read besides it (the
//! TLS certificate and key, when configured).

use std::path::Path;
use std::process::ExitCode;

/// Prints the effective config; exit 0 when valid, 1 with the error line otherwise.
pub fn check(explicit: Option<&Path>) -> ExitCode {
    match crate::config::load(explicit, std::env::vars()) {
        Ok(loaded) => {
            let tls_fingerprint = match check_tls(&loaded.config) {
                Ok(f) => f,
                Err(line) => {
                    eprintln!("{line}");
                    return ExitCode::FAILURE;
                }
            };
            match &loaded.file {
                Some(f) => {
                    println!("# effective configuration (file {} + defaults + environment)", f.display())
                }
                None => println!("# effective configuration (defaults + environment; no config file)"),
            }
            if let Some(fingerprint) = tls_fingerprint {
                println!("# TLS certificate SHA-256 fingerprint: {fingerprint}");
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

/// Loads the TLS certificate and key as `serve` would; the leaf
/// certificate's fingerprint, or the error line.
fn check_tls(config: &crate::config::Config) -> Result<Option<String>, String> {
    let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) else { return Ok(None) };
    crate::http::tls::TlsMaterial::load(cert, key)
        .map(|m| Some(m.fingerprint().to_string()))
        .map_err(|e| format!("config error: server.tls_cert / server.tls_key: {e}"))
}
