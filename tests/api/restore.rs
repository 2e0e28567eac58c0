//! `energyload restore FILE` through the real binary and a child server:
//! traffic → backup → more traffic → stop → restore → start gives exactly
//! the backup's state (messages and their statuses, users, API keys, audit
//! events) plus the restore's audit event, with a chain that verifies; the
//! replaced database is kept aside and opens; tokens issued before the
//! restore are refused (new signing keys). Restore is refused while a
//! server runs, and a corrupt, foreign or newer file is refused — in every
//! refusal the database stays as it was.

use std::path::{Path, PathBuf};
use std::time::Duration;

use energyload::storage::LATEST_VERSION;
use rustix::process::Signal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cli_identity::{call, cli_key, cli_ok, login, token};
use crate::common::esight::{spawn_simulator, wait_until};
use crate::common::process::{ChildServer, run_cli, write_config};
use crate::common::session::{MESSAGES, message, message_for, unique_id};

const PASSWORD: &str = "restore-test-password";

/// A data directory with an admin and an API key, driven by a config file.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    key: String,
}

impl Setup {
    fn new(extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), extra_config);
        add_user(&config, dir.path(), "admin", "admin");
        let (key, _) = cli_key(&config, "feed");
        Self { dir, config, key }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn backup(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        cli_ok(&self.config, &["backup", path.to_str().unwrap()]);
        path
    }
}

fn add_user(config: &Path, dir: &Path, name: &str, role: &str) {
    let pw = dir.join("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    cli_ok(config, &["user", "add", name, "--role", role, "--password-file", pw.to_str().unwrap()]);
}

fn stop(mut server: ChildServer) {
    server.signal(Signal::TERM);
    assert_eq!(server.wait(Duration::from_secs(30)), Some(0));
}

fn get(server: &ChildServer, key: &str, token: &str, path: &str) -> Value {
    let r = call(server, "GET", path, key, token, None);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// The whole page, asserting there is no next one.
fn items(server: &ChildServer, key: &str, token: &str, path: &str) -> Vec<Value> {
    let page = get(server, key, token, path);
    assert!(page["next_cursor"].is_null(), "one page is enough: {path}");
    page["items"].as_array().unwrap().clone()
}

/// What a restore must bring back, read through the API. API keys without
/// `last_used_at`, which the server updates on use.
#[derive(Debug, PartialEq)]
struct State {
    messages: Vec<Value>,
    by_status: Value,
    users: Vec<Value>,
    api_keys: Vec<Value>,
    audit: Vec<Value>,
}

fn state(server: &ChildServer, key: &str, token: &str) -> State {
    let mut api_keys = items(server, key, token, "/api/v1/management/apikeys");
    for k in &mut api_keys {
        k.as_object_mut().unwrap().remove("last_used_at");
    }
    State {
        messages: items(server, key, token, &format!("{MESSAGES}?limit=500")),
        by_status: get(server, key, token, "/api/v1/service/send/stats")["by_status"].clone(),
        users: items(server, key, token, "/api/v1/management/users"),
        api_keys,
        audit: items(server, key, token, "/api/v1/management/audit?limit=500"),
    }
}

fn post(server: &ChildServer, key: &str, token: &str, body: &Value) {
    let r = call(server, "POST", MESSAGES, key, token, Some(body));
    assert_eq!(r.status, 202, "{}", r.text());
}

fn audit_id(event: &Value) -> u64 {
    event["id"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_restored_backup_is_exactly_the_state_at_the_backup() {
    let sim = spawn_simulator();
    let setup = Setup::new(&sim.config_toml());
    let (spare_key, spare_id) = cli_key(&setup.config, "spare");
    let key = setup.key.clone();
    let server = ChildServer::start(&setup.config);
    let admin = token(&server, &key, "admin", PASSWORD);
    for _ in 0..4 {
        post(&server, &key, &admin, &message(&unique_id("restore")));
    }
    let unknown_meter = message_for(&unique_id("restore"), "lu", "electricity", "VPC", "LU_VPC_Nowhere_9");
    post(&server, &key, &admin, &json!([unknown_meter]));
    wait_until(Duration::from_secs(30), "every message settled", || {
        let s = get(&server, &key, &admin, "/api/v1/service/send/stats")["by_status"].clone();
        s["delivered"] == 4 && s["failed"] == 1
    });
    let before = state(&server, &key, &admin);
    let backup = setup.backup("backup.db");

    // More traffic after the backup: messages, a user, a key, a revocation.
    for _ in 0..3 {
        post(&server, &key, &admin, &message(&unique_id("later")));
    }
    add_user(&setup.config, setup.dir.path(), "bob", "backoffice");
    let (later_key, _) = cli_key(&setup.config, "later");
    cli_ok(&setup.config, &["apikey", "revoke", &spare_id]);
    stop(server);

    let out = run_cli(&setup.config, &["restore", backup.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("schema version {LATEST_VERSION}")), "{stdout}");
    assert!(stdout.contains("users 1, API keys 2,"), "{stdout}");
    assert!(stdout.contains("messages 5 (delivered 4, failed 1)"), "{stdout}");
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("previous database kept as "))
        .map(PathBuf::from)
        .expect("the replaced database is named");
    assert_eq!(kept.parent(), Some(setup.data().as_path()), "{stdout}");
    assert!(kept.file_name().unwrap().to_string_lossy().starts_with("energyload.db.replaced-"), "{stdout}");
    assert!(!stdout.contains(&key) && !stdout.contains(PASSWORD), "no secrets printed: {stdout}");

    let server = ChildServer::start(&setup.config);
    let stale = call(&server, "GET", "/api/v1/management/users", &key, &admin, None);
    assert_eq!(stale.status, 401, "a token from before the restore is refused: {}", stale.text());
    let admin = token(&server, &key, "admin", PASSWORD);
    let after = state(&server, &key, &admin);
    assert_eq!(after.messages, before.messages);
    assert_eq!(after.by_status, before.by_status);
    assert_eq!(after.users, before.users);
    assert_eq!(after.api_keys, before.api_keys);

    // The backup's events, then the restore's, then this test's logins.
    let last_before = audit_id(&before.audit[0]);
    let kept_events: Vec<Value> =
        after.audit.iter().filter(|e| audit_id(e) <= last_before).cloned().collect();
    assert_eq!(kept_events, before.audit);
    let restored = after.audit.iter().find(|e| audit_id(e) == last_before + 1).expect("the restore's event");
    assert_eq!(restored["type"], "backup_restored", "{restored}");
    assert_eq!(restored["detail"]["via"], "cli", "{restored}");
    assert_eq!(restored["detail"]["kept_aside"], kept.to_str().unwrap(), "{restored}");
    let verify = get(&server, &key, &admin, "/api/v1/management/audit/verify");
    assert_eq!(verify["ok"], true, "{verify}");
    let out = cli_ok(&setup.config, &["audit", "verify"]);
    assert!(out.starts_with("audit chain ok"), "{out}");

    // Identity is the backup's: the later user and key are gone, the key
    // revoked after the backup works again.
    assert_eq!(login(&server, &key, "bob", PASSWORD).status, 401);
    assert_eq!(login(&server, &later_key, "admin", PASSWORD).status, 401);
    assert_eq!(login(&server, &spare_key, "admin", PASSWORD).status, 200);
    stop(server);

    // The replaced database is whole and holds what came after the backup.
    let old = rusqlite::Connection::open(&kept).unwrap();
    let check: String = old.pragma_query_value(None, "integrity_check", |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let count = |sql: &str| -> i64 { old.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM messages"), 8);
    assert_eq!(count("SELECT count(*) FROM users WHERE username = 'bob'"), 1);
}

/// Every file name in `dir` with the SHA-256 of its content.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, hex::encode(Sha256::digest(std::fs::read(&p).unwrap())))
        })
        .filter(|(name, _)| name != "energyload.lock")
        .collect();
    files.sort();
    files
}

fn assert_refused(config: &Path, file: &Path, reason: &str) {
    let out = run_cli(config, &["restore", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(reason), "{}: {stderr}", file.display());
}

#[test]
fn restore_is_refused_while_the_server_runs() {
    let setup = Setup::new("");
    let backup = setup.backup("backup.db");
    add_user(&setup.config, setup.dir.path(), "bob", "backoffice");
    let server = ChildServer::start(&setup.config);
    let users_before = cli_ok(&setup.config, &["user", "list"]);
    let files_before = snapshot(&setup.data());

    let holder = format!("is in use by process {} (energyload serve); stop it first", server.child.id());
    assert_refused(&setup.config, &backup, &holder);

    assert_eq!(cli_ok(&setup.config, &["user", "list"]), users_before);
    assert!(users_before.contains("bob"));
    let names = |s: Vec<(String, String)>| s.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(snapshot(&setup.data())), names(files_before), "nothing added or moved aside");
    assert_eq!(login(&server, &setup.key, "bob", PASSWORD).status, 200, "the server still serves");
    stop(server);
}

#[test]
fn a_corrupt_foreign_or_newer_file_is_refused_and_the_database_kept() {
    let setup = Setup::new("");
    let good = std::fs::read(setup.backup("backup.db")).unwrap();
    add_user(&setup.config, setup.dir.path(), "bob", "backoffice");
    let before = snapshot(&setup.data());
    let file = |name: &str, bytes: &[u8]| {
        let path = setup.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };

    let truncated = file("truncated.db", &good[..good.len() / 2]);
    assert_refused(&setup.config, &truncated, "not a usable energyload backup");
    let mut damaged = good.clone();
    let page = 4096;
    damaged[page..2 * page].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + 13) as u8);
    let damaged = file("damaged.db", &damaged);
    assert_refused(&setup.config, &damaged, "not a usable energyload backup");
    let garbage: Vec<u8> = (0..65536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_refused(&setup.config, &file("garbage.db", &garbage), "not a SQLite database");
    assert_refused(&setup.config, &file("config.toml.bak", b"[server]\n"), "not a SQLite database");
    let foreign = setup.dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE notes (x TEXT)").unwrap();
    assert_refused(&setup.config, &foreign, "not an energyload database");
    let newer = file("newer.db", &good);
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", LATEST_VERSION + 1)
        .unwrap();
    assert_refused(&setup.config, &newer, "is newer than this binary supports");
    assert_refused(&setup.config, &setup.dir.path().join("missing.db"), "cannot read");

    assert_eq!(snapshot(&setup.data()), before, "the data directory is byte for byte unchanged");
    assert!(cli_ok(&setup.config, &["user", "list"]).contains("bob"));
}

#[test]
fn the_help_explains_what_is_kept_aside_and_the_signing_keys() {
    let out = std::process::Command::new(crate::common::process::bin())
        .args(["restore", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for needle in ["energyload.db.replaced-", "signing keys", "log in again", "Examples:", "--config"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

/// The attack on `restore --from-replica`'s key check: a data directory
/// without `audit-chain.key` (a new VM after the disaster, the key not
/// copied back). Refused before Litestream runs, and nothing is changed —
/// a restored chain that could never verify is worse than no restore.
#[test]
fn restore_from_a_replica_without_the_audit_chain_key_is_refused_and_changes_nothing() {
    let setup = Setup::new("");
    let key_file = setup.data().join("audit-chain.key");
    std::fs::remove_file(&key_file).expect("the data directory had an audit-chain.key");
    let files_before = snapshot(&setup.data());
    let replica = setup.dir.path().join("replica");
    std::fs::create_dir(&replica).unwrap();

    let out = run_cli(&setup.config, &["restore", "--from-replica", replica.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("audit-chain.key is missing"), "{stderr}");
    assert_eq!(snapshot(&setup.data()), files_before, "nothing added, moved or changed");
    assert!(!key_file.exists());
}
