//! `energyload demo`: the appliance and the eSight simulator in one process
//! on localhost, with its data in `./demo-data` (kept between runs), an admin
//! with a fresh random password, an `esight` user for the simulator's error
//! reports, a data producer with an API key, and sample traffic (a share
//! invalid, some rejected later by the simulator, an eSight outage now and
//! then), so every admin page shows life within a minute.

mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use crate::app::App;
use crate::auth::NewApiKey;
use crate::config::{Config, Secret};
use crate::domain::user::{Role, Roles, Username};
use crate::simulator::{ApplianceLink, EsightSim, Faults, Outage, OutageMode, SimConfig};
use crate::storage::{Storage, identity};
use crate::users::{self, UserChanges};

pub use traffic::sample_message;

/// What the demo is asked to do.
#[derive(Debug)]
pub struct DemoOptions {
    /// The appliance's listener, bound by the caller (who also checked
    /// that no process holds the data directory).
    pub listener: tokio::net::TcpListener,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Start over: delete the data directory first.
    pub fresh: bool,
    /// Pause between sample messages.
    pub interval: Duration,
    /// Run Litestream (this binary) replicating to this directory.
    pub replicate: Option<(PathBuf, PathBuf)>,
}

/// Credentials the demo made, printed for the person running it.
struct Credentials {
    admin_password: String,
    feed_password: String,
    esight_password: String,
    api_key: String,
}

fn random_password() -> String {
    use base64::Engine;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Creates or resets a user with a new random password.
fn ensure_user(conn: &Connection, config: &Config, name: &str, role: Role) -> Result<String, String> {
    let password = random_password();
    let hash = users::hash_new_password(config, name, password.clone()).map_err(|e| e.to_string())?;
    let username = Username::parse(name).map_err(|e| e.to_string())?;
    match identity::user_by_name(conn, name).map_err(|e| e.to_string())? {
        Some(u) => {
            let changes = UserChanges {
                password_hash: Some(hash),
                roles: Some(Roles::single(role)),
                status: Some(crate::domain::user::UserStatus::Active),
            };
            users::update(conn, &u.id, changes).map_err(|e| e.to_string())?;
        }
        None => {
            users::create(conn, &username, hash, &Roles::single(role), Some("demo"))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(password)
}

fn prepare_identities(config: &Config) -> Result<Credentials, String> {
    let storage = Storage::open(&config.storage).map_err(|e| e.to_string())?;
    storage.migrate().map_err(|e| e.to_string())?;
    let mut conn = storage.open_connection().map_err(|e| e.to_string())?;
    let key = NewApiKey::generate().map_err(|e| e.to_string())?;
    let record = crate::api::new_api_key_record(&key, "demo".into(), Some("demo".into()), None);
    // A new key each run (a key is shown once); the last run's goes, as
    // two active keys may not share a name.
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    identity::revoke_api_keys_named(&tx, "demo", crate::clock::now_millis()).map_err(|e| e.to_string())?;
    identity::insert_api_key(&tx, &record).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    Ok(Credentials {
        admin_password: ensure_user(&conn, config, "admin", Role::Admin)?,
        feed_password: ensure_user(&conn, config, "demo-feed", Role::Backoffice)?,
        esight_password: ensure_user(&conn, config, "esight", Role::Esight)?,
        api_key: key.expose().to_string(),
    })
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(opts: DemoOptions, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    if opts.fresh && opts.data_dir.exists() {
        std::fs::remove_dir_all(&opts.data_dir)
            .map_err(|e| format!("cannot remove {}: {e}", opts.data_dir.display()))?;
    }
    // The appliance's port is bound already: the simulator must know where
    // to post its error reports, and the appliance where eSight is.
    let listen = opts.listener.local_addr().map_err(|e| e.to_string())?;
    let base_url = format!("http://{listen}");

    let mut config = Config::default();
    config.server.listen = listen;
    config.storage.data_dir = opts.data_dir.clone();
    config.storage.min_free_bytes = 64 * 1024 * 1024;
    config.delivery.backoff_initial = crate::config::Duration::from_millis(500);
    config.delivery.backoff_max = crate::config::Duration::from_secs(10);
    let cfg = config.clone();
    let creds =
        tokio::task::spawn_blocking(move || prepare_identities(&cfg)).await.map_err(|e| e.to_string())??;

    let faults = Faults {
        error_rates: [(503, 0.03)].into_iter().collect(),
        report_fraction: 0.05,
        report_delay_ms: 3000,
        outage: Some(Outage {
            mode: OutageMode::Refuse,
            starts_in_ms: 75_000,
            duration_ms: 12_000,
            every_ms: Some(120_000),
        }),
        ..Faults::default()
    };
    let sim = EsightSim::start(SimConfig {
        faults,
        appliance: Some(ApplianceLink {
            base_url: base_url.clone(),
            api_key: Secret::new(creds.api_key.clone()),
            username: "esight".into(),
            password: Secret::new(creds.esight_password.clone()),
        }),
        ..SimConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let s = sim.config();
    config.esight.token_url = Some(sim.token_url());
    config.esight.sites_url = Some(sim.sites_url());
    config.esight.meters_url = Some(sim.meters_url());
    config.esight.consumption_url = Some(sim.consumption_url());
    config.esight.username = Some(Secret::new(s.username.clone()));
    config.esight.password = Some(s.password.clone());
    config.esight.post_username = Some(Secret::new(s.post_username.clone()));
    config.esight.post_password = Some(s.post_password.clone());

    let DemoOptions { listener, data_dir, interval, replicate, .. } = opts;
    // The database exists (the identities are in it): Litestream can start.
    let litestream = match replicate {
        Some((binary, replica_dir)) => {
            let setup = crate::replication::LitestreamSetup {
                binary,
                database: crate::replication::database_path(&data_dir),
                replica_dir: replica_dir.clone(),
                work_dir: data_dir.join("litestream"),
                sync_interval: "1s".into(),
            };
            let process =
                tokio::task::spawn_blocking(move || crate::replication::LitestreamProcess::start(&setup))
                    .await
                    .map_err(|e| e.to_string())??;
            config.replication.mode = crate::config::ReplicationMode::Litestream;
            config.replication.socket = Some(process.socket().to_path_buf());
            config.replication.acknowledge = crate::config::Acknowledge::Replicated;
            config.replication.replica = Some(replica_dir.display().to_string());
            println!(
                "Litestream replicates the demo to {} (config {}); answers wait for the replica",
                replica_dir.display(),
                process.config().display()
            );
            Some(process)
        }
        None => None,
    };
    let app = App::build_on(config, listener).await.map_err(|e| e.to_string())?;
    print_banner(&base_url, &sim.base_url(), &creds, &data_dir);

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(traffic::TrafficStats::default());
    let plan = traffic::TrafficPlan {
        base_url: base_url.clone(),
        api_key: creds.api_key.clone(),
        username: "demo-feed".into(),
        password: creds.feed_password.clone(),
        interval,
    };
    let (stop_traffic, traffic_stats) = (stop.clone(), stats.clone());
    let traffic = std::thread::Builder::new()
        .name("demo-traffic".into())
        .spawn(move || traffic::run(plan, stop_traffic, traffic_stats))
        .map_err(|e| e.to_string())?;

    let result = app.run_until_stopped(shutdown).await.map_err(|e| e.to_string());
    stop.store(true, Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || traffic.join()).await;
    sim.shutdown().await;
    if let Some(mut process) = litestream {
        let _ = tokio::task::spawn_blocking(move || process.stop()).await;
    }
    println!(
        "demo stopped: {} messages accepted, {} invalid (refused at ingest); data kept in {}",
        stats.accepted.load(Ordering::Relaxed),
        stats.invalid.load(Ordering::Relaxed),
        data_dir.display()
    );
    result
}

fn print_banner(base_url: &str, sim_url: &str, c: &Credentials, data_dir: &std::path::Path) {
    let sample = sample_message(0, &crate::clock::format_millis(crate::clock::now_millis()));
    println!();
    println!("energyload demo is running (data in {}; Ctrl-C stops it)", data_dir.display());
    println!();
    println!("  admin page:  {base_url}/admin/");
    println!("  username:    admin");
    println!("  password:    {}", c.admin_password);
    println!();
    println!("  eSight simulator: {sim_url} (see {sim_url}/_sim/stats)");
    println!("  data producer:    demo-feed / {} with API key {}", c.feed_password, c.api_key);
    println!();
    println!("  post a message yourself:");
    println!(
        "  TOKEN=$(curl -s -X POST {base_url}/login -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \
         -d '{{\"username\":\"demo-feed\",\"password\":\"{pw}\"}}') && curl -s -X POST {base_url}/api/v1/service/send/messages \
         -H 'X-API-Key: {key}' -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{sample}'",
        key = c.api_key,
        pw = c.feed_password,
    );
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo keeps its data between runs and makes a new `demo` key each
    /// time; the last run's is revoked, or the second start would be refused
    /// (two active keys may not share a name).
    #[test]
    fn a_second_run_on_kept_data_replaces_the_demo_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.path().to_path_buf();
        config.auth.argon2_memory_kib = 8;
        config.auth.argon2_iterations = 1;
        let first = prepare_identities(&config).unwrap();
        let second = prepare_identities(&config).unwrap();
        assert_ne!(first.api_key, second.api_key);
        let conn = Storage::open(&config.storage).unwrap().open_connection().unwrap();
        let keys = identity::all_api_keys(&conn).unwrap();
        let active: Vec<_> = keys.iter().filter(|k| k.name == "demo" && k.revoked_at.is_none()).collect();
        assert_eq!((keys.len(), active.len()), (2, 1), "{keys:?}");
        assert!(second.api_key.starts_with(&active[0].prefix), "the new key is the active one");
    }
}
