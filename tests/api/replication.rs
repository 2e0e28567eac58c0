//! Replication by Litestream (issue 15), with a real `litestream` process
//! replicating to a directory and a real `energyload serve` child:
//! - the disaster: concurrent ingest with `acknowledge = "replicated"`,
//!   SIGKILL of both processes at a random moment, the whole data directory
//!   deleted, `restore --from-replica` into a new one: every message
//!   answered `202` is there, users, keys and the audit chain verify,
//!   delivery resumes (several rounds);
//! - `acknowledge = "local"`: the same, measuring the acknowledged messages
//!   lost, all within the documented window before the kill;
//! - Litestream stopped → ingest `503` + `Retry-After`, `/readyz` names
//!   replication, recovery without a restart once it runs again;
//! - point-in-time restore (`--at`);
//! - `restore` refused while Litestream replicates the database.
//!
//! Without a `litestream` binary (PATH, `ENERGYLOAD_LITESTREAM` or
//! `~/.cache/litestream-venv/bin`) the tests print why and pass, unless
//! `ENERGYLOAD_REQUIRE_LITESTREAM=1` (CI installs it and sets that).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use energyload::replication::{LitestreamProcess, LitestreamSetup};
use rustix::process::Signal;
use serde_json::Value;

use crate::common::esight::{Sim, spawn_simulator, wait_until};
use crate::common::litestream::litestream;
use crate::common::process::{ChildServer, bin, seed_admin_and_key, write_config};
use crate::common::session::{MESSAGES, message, unique_id};

const PASSWORD: &str = "replication-test-password-1";

/// One installation: config, data directory, replica, Litestream's files.
struct Site {
    dir: PathBuf,
    config: PathBuf,
    replica: PathBuf,
    binary: PathBuf,
}

impl Site {
    /// Writes the config (`[replication]` with `acknowledge`) and seeds the
    /// admin and an API key; returns the key.
    fn new(
        root: &Path,
        name: &str,
        binary: &Path,
        sim: &Sim,
        acknowledge: &str,
        timeout: &str,
    ) -> (Self, String) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("litestream/litestream.sock");
        let replica = root.join(format!("{name}-replica"));
        let extra = format!(
            "{}\n[replication]\nmode = \"litestream\"\nsocket = {socket:?}\nacknowledge = \"{acknowledge}\"\n\
             timeout = \"{timeout}\"\nreplica = {replica:?}\n",
            sim.config_toml()
        );
        // Seeded before Litestream runs, so without replication (a CLI
        // change waits for the replica with `acknowledge = "replicated"`).
        let key = seed_admin_and_key(&write_config(&dir, &sim.config_toml()), PASSWORD, "replication");
        let config = write_config(&dir, &extra);
        (Self { dir, config, replica, binary: binary.to_path_buf() }, key)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn litestream(&self, sync_interval: &str) -> LitestreamProcess {
        LitestreamProcess::start(&LitestreamSetup {
            binary: self.binary.clone(),
            database: self.data().join("energyload.db"),
            replica_dir: self.replica.clone(),
            work_dir: self.dir.join("litestream"),
            sync_interval: sync_interval.into(),
        })
        .unwrap()
    }

    /// `energyload ARGS --config` with `litestream` on the PATH.
    fn cli(&self, config: &Path, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.binary.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(bin()).args(args).arg("--config").arg(config).env("PATH", path).output().unwrap()
    }
}

/// A client that returns `None` on a transport error (the server was
/// killed): status, JSON body (null if none) and `Retry-After`.
fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, Value, Option<String>)> {
    let reply = crate::common::http::try_request(method, url, headers, body).ok()?;
    let retry_after = reply.header("retry-after").map(str::to_string);
    Some((reply.status, serde_json::from_slice(&reply.body).unwrap_or(Value::Null), retry_after))
}

struct Client {
    base: String,
    key: String,
    token: String,
}

impl Client {
    fn login(base: &str, key: &str) -> Self {
        let body = format!(r#"{{"username": "admin", "password": "{PASSWORD}"}}"#);
        let h = [("X-API-Key", key), ("Content-Type", "application/json"), ("Accept", "application/json")];
        let (status, v, _) = call("POST", &format!("{base}/login"), &h, Some(body.as_bytes())).unwrap();
        assert_eq!(status, 200, "login: {v}");
        Self { base: base.into(), key: key.into(), token: v["access_token"].as_str().unwrap().into() }
    }

    fn post(&self, id: &str) -> Option<(u16, Value, Option<String>)> {
        let bearer = format!("Bearer {}", self.token);
        let h = [
            ("X-API-Key", self.key.as_str()),
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        let body = message(id).to_string();
        call("POST", &format!("{}{MESSAGES}", self.base), &h, Some(body.as_bytes()))
    }

    /// Every stored message as messageId → status.
    fn all(&self) -> std::collections::BTreeMap<String, String> {
        let bearer = format!("Bearer {}", self.token);
        let h = [("X-API-Key", self.key.as_str()), ("Authorization", bearer.as_str())];
        let mut out = std::collections::BTreeMap::new();
        let mut query = "limit=500".to_string();
        loop {
            let (status, page, _) =
                call("GET", &format!("{}{MESSAGES}?{query}", self.base), &h, None).unwrap();
            assert_eq!(status, 200, "{page}");
            for m in page["items"].as_array().unwrap() {
                let id = m["messageId"].as_str().or_else(|| m["message_id"].as_str()).unwrap_or_default();
                out.insert(id.to_string(), m["status"].as_str().unwrap().to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => query = format!("limit=500&cursor={c}"),
                None => return out,
            }
        }
    }
}

/// Posts messages until `stop`, recording each messageId answered `202`
/// with when; any answer but `202` fails the test.
fn ingest(client: Arc<Client>, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<(String, Instant)>>>) {
    while !stop.load(Ordering::Relaxed) {
        let id = unique_id("repl");
        match client.post(&id) {
            Some((202, _, _)) => acked.lock().unwrap().push((id, Instant::now())),
            Some((status, v, _)) => panic!("unexpected answer {status}: {v}"),
            None => return,
        }
    }
}

/// Ingest from three threads, then SIGKILL of the server and Litestream
/// (the VM is gone) at a random moment; returns what was acknowledged and
/// when the kill came.
fn ingest_then_lose_the_vm(
    server: &mut ChildServer,
    mut litestream: LitestreamProcess,
    client: &Arc<Client>,
) -> (Vec<(String, Instant)>, Instant) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (c, s, a) = (client.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || ingest(c, s, a))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700 + rand::random::<u64>() % 1500));
    let killed = Instant::now();
    server.signal(Signal::KILL);
    if let Some(pid) = litestream.pid().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        rustix::process::kill_process(pid, Signal::KILL).unwrap();
    }
    litestream.stop();
    server.wait(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("an ingest thread failed");
    }
    let acked = acked.lock().unwrap().clone();
    (acked, killed)
}

/// Deletes the data directory, restores from the replica into a new site
/// (the saved audit-chain key copied in first, as the drill says) and
/// starts a server there without replication.
fn recover(
    root: &Path,
    site: &Site,
    saved_chain_key: &[u8],
    sim: &Sim,
    at: Option<&str>,
) -> (PathBuf, ChildServer) {
    std::fs::remove_dir_all(site.data()).unwrap();
    let new = root.join(format!("recovered-{}", unique_id("r")));
    let data = new.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = write_config(&new, &sim.config_toml());
    // Without the chain key the restore refuses (the restored chain could not verify).
    let replica = site.replica.to_str().unwrap();
    let out = site.cli(&config, &["restore", "--from-replica", replica]);
    assert!(!out.status.success(), "restore without audit-chain.key must refuse");
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit-chain.key"), "{out:?}");
    let key_file = data.join("audit-chain.key");
    std::fs::write(&key_file, saved_chain_key).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut args = vec!["restore", "--from-replica", replica];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let out = site.cli(&config, &args);
    assert!(out.status.success(), "restore --from-replica: {}", String::from_utf8_lossy(&out.stderr));
    let out = site.cli(&config, &["audit", "verify"]);
    assert!(out.status.success(), "audit verify after the restore: {out:?}");
    let server = ChildServer::start(&config);
    (config, server)
}

#[test]
fn losing_the_vm_loses_no_acknowledged_message() {
    let Some(binary) = litestream() else { return };
    let sim = spawn_simulator();
    let root = tempfile::tempdir().unwrap();
    let mut total = 0;
    for round in 0..3 {
        let (site, key) = Site::new(root.path(), &format!("vm{round}"), &binary, &sim, "replicated", "10s");
        let chain_key =
            std::fs::read(site.data().join("audit-chain.key")).expect("the CLI wrote audit events");
        let litestream = site.litestream("1s");
        let mut server = ChildServer::start(&site.config);
        let client = Arc::new(Client::login(&server.base(), &key));
        let (acked, _) = ingest_then_lose_the_vm(&mut server, litestream, &client);
        drop(server);
        assert!(acked.len() >= 5, "round {round}: too little traffic to mean anything: {}", acked.len());

        let (_config, server) = recover(root.path(), &site, &chain_key, &sim, None);
        // Users and keys came back: the old key and password log in.
        let client = Client::login(&server.base(), &key);
        let stored = client.all();
        let lost: Vec<&String> =
            acked.iter().map(|(id, _)| id).filter(|id| !stored.contains_key(*id)).collect();
        assert!(lost.is_empty(), "round {round}: {} acknowledged messages lost: {lost:?}", lost.len());
        // Delivery resumes from the restored database.
        wait_until(Duration::from_secs(60), "every restored message delivered", || {
            let all = client.all();
            acked.iter().all(|(id, _)| all.get(id).map(String::as_str) == Some("delivered"))
        });
        total += acked.len();
    }
    eprintln!("disaster test: {total} acknowledged messages over 3 rounds, none lost");
}

#[test]
fn local_acknowledgement_loses_at_most_the_sync_window() {
    let Some(binary) = litestream() else { return };
    let sim = spawn_simulator();
    let root = tempfile::tempdir().unwrap();
    let (site, key) = Site::new(root.path(), "local", &binary, &sim, "local", "5s");
    let chain_key = std::fs::read(site.data().join("audit-chain.key")).unwrap();
    let litestream = site.litestream("1s");
    let mut server = ChildServer::start(&site.config);
    let client = Arc::new(Client::login(&server.base(), &key));
    // Long enough for several sync intervals before the kill.
    std::thread::sleep(Duration::from_millis(1500));
    let (acked, killed) = ingest_then_lose_the_vm(&mut server, litestream, &client);
    drop(server);
    let (_config, server) = recover(root.path(), &site, &chain_key, &sim, None);
    let stored = Client::login(&server.base(), &key).all();
    let lost: Vec<Duration> = acked
        .iter()
        .filter(|(id, _)| !stored.contains_key(id))
        .map(|(_, at)| killed.duration_since(*at))
        .collect();
    let oldest = lost.iter().max().copied().unwrap_or_default();
    eprintln!(
        "acknowledge = \"local\": {} of {} acknowledged messages lost with the VM; the oldest was acknowledged \
         {oldest:?} before the kill",
        lost.len(),
        acked.len()
    );
    // The documented bound: Litestream's sync interval (1 s) plus one sync
    // and the status probe's second; 3 s leaves room for a loaded machine.
    assert!(oldest <= Duration::from_secs(3), "a message acknowledged {oldest:?} before the kill was lost");
}

#[test]
fn replica_unreachable_refuses_then_recovers() {
    let Some(binary) = litestream() else { return };
    let sim = spawn_simulator();
    let root = tempfile::tempdir().unwrap();
    let (site, key) = Site::new(root.path(), "outage", &binary, &sim, "replicated", "2s");
    let mut litestream = site.litestream("1s");
    let server = ChildServer::start(&site.config);
    let client = Client::login(&server.base(), &key);
    let (status, v, _) = client.post(&unique_id("before")).unwrap();
    assert_eq!(status, 202, "{v}");
    let readyz = |expect: u16| {
        let (status, v, _) = call("GET", &format!("{}/readyz", server.base()), &[], None).unwrap();
        (status == expect).then_some(v)
    };
    assert_eq!(readyz(200).expect("ready")["checks"]["replication"]["status"], "ok");

    litestream.stop();
    let id = unique_id("during");
    let (status, v, retry_after) = client.post(&id).unwrap();
    assert_eq!(status, 503, "no 202 without the replica: {v}");
    assert_eq!(v["error"]["code"], "ServiceUnavailable", "{v}");
    assert_eq!(retry_after.as_deref(), Some("2"));
    let v = readyz(503).expect("readyz fails while the replica does not confirm");
    assert_eq!(v["checks"]["replication"]["status"], "fail", "{v}");
    assert!(v["checks"]["replication"]["last_error"].is_string(), "{v}");
    // A change of users waits the same way.
    let bearer = format!("Bearer {}", client.token);
    let h = [
        ("X-API-Key", key.as_str()),
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = br#"{"username": "during-outage", "password": "correct-horse-battery-staple-42", "roles": ["backoffice"]}"#;
    let (status, v, _) =
        call("POST", &format!("{}/api/v1/management/users/user", server.base()), &h, Some(body)).unwrap();
    assert_eq!(status, 503, "user creation acknowledged without the replica: {v}");

    // Litestream back: no restart of ours, the retry is acknowledged (as
    // the duplicate of what was stored locally) and readiness returns.
    let _litestream = site.litestream("1s");
    wait_until(Duration::from_secs(20), "readyz ok again", || readyz(200).is_some());
    let (status, v, _) = client.post(&id).unwrap();
    assert_eq!(status, 202, "{v}");
    let (status, v, _) = client.post(&unique_id("after")).unwrap();
    assert_eq!(status, 202, "{v}");
}

#[test]
fn point_in_time_restore_returns_that_moment() {
    let Some(binary) = litestream() else { return };
    let sim = spawn_simulator();
    let root = tempfile::tempdir().unwrap();
    let (site, key) = Site::new(root.path(), "pitr", &binary, &sim, "replicated", "10s");
    let chain_key = std::fs::read(site.data().join("audit-chain.key")).unwrap();
    let mut litestream = site.litestream("1s");
    let mut server = ChildServer::start(&site.config);
    let client = Client::login(&server.base(), &key);
    let post_all = |ids: &[String]| {
        for id in ids {
            let (status, v, _) = client.post(id).unwrap();
            assert_eq!(status, 202, "{v}");
        }
    };
    let early: Vec<String> = (0..20).map(|_| unique_id("early")).collect();
    let late: Vec<String> = (0..20).map(|_| unique_id("late")).collect();
    post_all(&early);
    std::thread::sleep(Duration::from_millis(1500));
    let moment = time::OffsetDateTime::from(SystemTime::now())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    post_all(&late);
    server.signal(Signal::TERM);
    server.wait(Duration::from_secs(30));
    litestream.stop();

    let (_config, server) = recover(root.path(), &site, &chain_key, &sim, Some(&moment));
    let stored = Client::login(&server.base(), &key).all();
    let missing_early: Vec<_> = early.iter().filter(|id| !stored.contains_key(*id)).collect();
    assert!(missing_early.is_empty(), "state at {moment} lacks {missing_early:?}");
    let present_late: Vec<_> = late.iter().filter(|id| stored.contains_key(*id)).collect();
    assert!(present_late.is_empty(), "state at {moment} has later messages {present_late:?}");
}

#[test]
fn restore_is_refused_while_litestream_replicates() {
    let Some(binary) = litestream() else { return };
    let sim = spawn_simulator();
    let root = tempfile::tempdir().unwrap();
    let (site, _key) = Site::new(root.path(), "busy", &binary, &sim, "local", "5s");
    let backup = root.path().join("backup.db");
    let out = site.cli(&site.config, &["backup", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mut litestream = site.litestream("1s");
    for args in [
        vec!["restore", backup.to_str().unwrap()],
        vec!["restore", "--from-replica", site.replica.to_str().unwrap()],
    ] {
        let out = site.cli(&site.config, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran under Litestream");
        assert!(stderr.contains("Litestream replicates") && stderr.contains("stop it first"), "{stderr}");
    }
    // Stopped, the same restore runs.
    litestream.stop();
    let out = site.cli(&site.config, &["restore", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: BTreeSet<String> = std::fs::read_dir(site.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("energyload.db.replaced-")), "{names:?}");
}

/// The users in the replica now, read from a `litestream restore` of it.
fn users_on_replica(site: &Site, root: &Path) -> BTreeSet<String> {
    let out = root.join(format!("{}.db", unique_id("replica-read")));
    let status = Command::new(&site.binary)
        .args(["restore", "-o"])
        .arg(&out)
        .arg(format!("file://{}", site.replica.display()))
        .status()
        .unwrap();
    assert!(status.success(), "litestream restore");
    let conn = rusqlite::Connection::open(&out).unwrap();
    let mut stmt = conn.prepare("SELECT username FROM users").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn cli_changes_wait_for_the_replica_too() {
    let Some(binary) = litestream() else { return };
    let sim = spawn_simulator();
    let root = tempfile::tempdir().unwrap();
    let (site, _key) = Site::new(root.path(), "cli", &binary, &sim, "replicated", "2s");
    let password = site.dir.join("user.pw");
    std::fs::write(&password, "cli-replica-password-7391").unwrap();
    let add = |name: &str| {
        site.cli(
            &site.config,
            &["user", "add", name, "--role", "backoffice", "--password-file", password.to_str().unwrap()],
        )
    };

    // Litestream not running: the change is stored, but the command says
    // the replica did not confirm it (exit 75), like the server's 503.
    let out = add("offline-user");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("stored in the local database") && stderr.contains("did not confirm"),
        "{stderr}"
    );
    // Reading does not wait for the replica.
    let out = site.cli(&site.config, &["user", "list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("offline-user"), "stored locally: {out:?}");

    // Litestream running: success means the replica holds the change.
    let _litestream = site.litestream("1h");
    let out = add("online-user");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let users = users_on_replica(&site, root.path());
    assert!(users.contains("online-user") && users.contains("offline-user"), "{users:?}");
    let out = site.cli(&site.config, &["apikey", "create", "cli-key"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
