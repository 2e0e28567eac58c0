//! Live reload (SIGHUP, `systemctl reload`): reads the config file and the
//! environment again exactly as at start, then applies only what can change
//! under a running server: the eSight credentials (so a rotated secret file
//! takes effect) and the TLS certificate and key. Everything is read and
//! checked before anything is applied, so a failed reload (unreadable file,
//! invalid certificate, incomplete credentials) keeps every old value. Other
//! changed keys are reported as needing a restart. The outcome is logged and
//! audited (`config_reloaded` / `config_reload_failed`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Value;

use crate::app::AppState;
use crate::audit::{Actor, Event, EventType, RequestFacts};
use crate::config::{self, Config, ConfigError};
use crate::delivery::Credentials;
use crate::http::tls::{TlsError, TlsMaterial};

/// Keys a reload applies; a change to any other key waits for a restart.
const RELOADABLE: &[&str] = &[
    "esight.username",
    "esight.password",
    "esight.post_username",
    "esight.post_password",
    "server.tls_cert",
    "server.tls_key",
];

/// Why a reload was refused; the previous values stay in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration (or a secret file it names) cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new TLS certificate or key cannot be used.
    #[error("TLS (server.tls_cert / server.tls_key): {0}")]
    Tls(#[from] TlsError),
    /// Delivery runs but the new `[esight]` credentials are incomplete.
    #[error("[esight] credentials are incomplete")]
    IncompleteCredentials,
    /// The reload task panicked.
    #[error("the reload task failed")]
    Task,
}

impl ReloadError {
    /// The reason as audited: for a configuration error only the key and its
    /// source, never the offending value.
    fn audit_reason(&self) -> String {
        match self {
            Self::Config(e) => format!("config error: {} (from {})", e.key, e.origin),
            other => other.to_string(),
        }
    }
}

/// What a successful reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// What changed and is now in force (names, never values).
    pub applied: Vec<&'static str>,
    /// Keys whose new value waits for a restart.
    pub restart_needed: Vec<String>,
    /// SHA-256 of the certificate served from now on, when TLS is on.
    pub tls_fingerprint: Option<String>,
}

/// Reads the configuration again (`file` as at start, plus the environment)
/// and applies the reloadable parts. Blocking: reads files.
pub fn reload(state: &AppState, file: Option<&Path>) -> Result<ReloadReport, ReloadError> {
    let new = config::load(file, std::env::vars())?.config;
    let mut report =
        ReloadReport { restart_needed: restart_needed(&state.config, &new), ..Default::default() };
    let tls = prepare_tls(state, &new, &mut report)?;
    let credentials = prepare_credentials(state, &new, &mut report)?;
    if let (Some(slot), Some(material)) = (&state.tls, tls) {
        if slot.fingerprint() != material.fingerprint() {
            report.applied.push("server.tls_cert");
        }
        report.tls_fingerprint = Some(material.fingerprint().to_string());
        slot.replace(material);
    }
    if let Some(change) = credentials.and_then(|c| state.delivery.set_credentials(c)) {
        if change.token {
            report.applied.push("esight.username/password");
        }
        if change.post {
            report.applied.push("esight.post_username/post_password");
        }
    }
    Ok(report)
}

/// Reloads on the blocking pool, then logs and audits the outcome.
pub async fn reload_and_audit(
    state: Arc<AppState>,
    file: Option<PathBuf>,
) -> Result<ReloadReport, ReloadError> {
    let for_task = state.clone();
    let result = tokio::task::spawn_blocking(move || reload(&for_task, file.as_deref()))
        .await
        .unwrap_or(Err(ReloadError::Task));
    let event = Event::new(EventType::ConfigReloaded, Actor::default(), RequestFacts::default());
    let event = match &result {
        Ok(report) => {
            tracing::info!(
                applied = %report.applied.join(","),
                tls_fingerprint = report.tls_fingerprint.as_deref().unwrap_or("-"),
                "configuration reloaded"
            );
            if !report.restart_needed.is_empty() {
                tracing::warn!(
                    keys = %report.restart_needed.join(","),
                    "changed settings not applied: each needs a restart"
                );
            }
            event
                .with("applied", report.applied.join(","))
                .with("restart_needed", report.restart_needed.join(","))
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed; the previous secrets and certificates stay in force");
            Event { kind: EventType::ConfigReloadFailed, ..event }.with("reason", e.audit_reason())
        }
    };
    if let Err(e) = crate::audit::record(&state.storage, event.with("trigger", "SIGHUP")).await {
        tracing::error!(error = %e, "the reload could not be audited");
    }
    result
}

/// Reads the new certificate when TLS stays on; switching TLS on or off
/// needs a restart.
fn prepare_tls(
    state: &AppState,
    new: &Config,
    report: &mut ReloadReport,
) -> Result<Option<TlsMaterial>, ReloadError> {
    match (&state.tls, &new.server.tls_cert, &new.server.tls_key) {
        (Some(_), Some(cert), Some(key)) => Ok(Some(TlsMaterial::load(cert, key)?)),
        (None, None, None) => Ok(None),
        _ => {
            report.restart_needed.push("server.tls_cert".into());
            Ok(None)
        }
    }
}

/// The new eSight credentials, when delivery runs; delivery that was not
/// configured at start needs a restart to begin.
fn prepare_credentials(
    state: &AppState,
    new: &Config,
    report: &mut ReloadReport,
) -> Result<Option<Credentials>, ReloadError> {
    let credentials = Credentials::from_config(&new.esight);
    match (state.delivery.is_configured(), credentials) {
        (true, Some(c)) => Ok(Some(c)),
        (true, None) => Err(ReloadError::IncompleteCredentials),
        (false, Some(_)) => {
            report.restart_needed.push("esight".into());
            Ok(None)
        }
        (false, None) => Ok(None),
    }
}

/// Dotted keys outside [`RELOADABLE`] whose value differs. Secrets compare
/// as `<redacted>`, so only their presence counts here.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let (old, new) = (flatten(old), flatten(new));
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| !RELOADABLE.contains(&k.as_str()) && old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn flatten(config: &Config) -> BTreeMap<String, Value> {
    let Ok(Value::Table(sections)) = Value::try_from(config) else { return BTreeMap::new() };
    let mut out = BTreeMap::new();
    for (section, keys) in sections {
        let Value::Table(keys) = keys else { continue };
        for (key, value) in keys {
            out.insert(format!("{section}.{key}"), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_reloadable_changes_need_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.esight.password = Some(config::Secret::new("rotated"));
        new.server.tls_cert = Some("/etc/tls/new.pem".into());
        assert!(restart_needed(&old, &new).is_empty());
        new.server.listen = "0.0.0.0:9999".parse().unwrap();
        new.delivery.max_in_flight = 2;
        new.esight.token_url = Some("https://esight.example/token".into());
        assert_eq!(
            restart_needed(&old, &new),
            ["delivery.max_in_flight", "esight.token_url", "server.listen"]
        );
    }

    #[test]
    fn audited_config_errors_name_the_key_not_the_value() {
        let e = ReloadError::Config(ConfigError {
            key: "esight.password".into(),
            origin: config::ConfigSource::Env("ENERGYLOAD_ESIGHT_PASSWORD".into()),
            line: None,
            message: "invalid type: integer `123456`".into(),
        });
        let reason = e.audit_reason();
        assert!(reason.contains("esight.password") && !reason.contains("123456"), "{reason}");
    }
}
