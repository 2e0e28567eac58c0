//! Upgrades: a database left by every earlier schema version (the committed
//! fixtures in `tests/fixtures/schema/`, built by `seeds`) is migrated by
//! this binary with its data intact — the schema becomes current, seeded
//! users log in with their passwords, the seeded API key works and the
//! revoked one does not, the audit chain verifies, and the counts hold. An
//! older backup given to `energyload restore` is migrated the same way.

pub mod seeds;

use std::path::{Path, PathBuf};

use energyload::storage::LATEST_VERSION;
use serde_json::Value;

use crate::cli_identity::{call, cli_ok, login, token};
use crate::common::process::{ChildServer, run_cli, write_config};

/// Retention long enough that the fixtures' old messages and events are not
/// pruned at start.
const KEEP_EVERYTHING: &str =
    "[retention]\ndelivered_days = 36500\nfailed_days = 36500\n\n[audit]\nretention_days = 36500\n";

/// Set to write the fixtures that are missing (after adding a migration).
const WRITE_FIXTURES: &str = "ENERGYLOAD_WRITE_SCHEMA_FIXTURES";

const REGENERATE: &str = "ENERGYLOAD_WRITE_SCHEMA_FIXTURES=1 cargo test --release --test api \
                          upgrade::every_earlier_schema_version_has_a_fixture";

/// The committed fixture of schema version `version`.
fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/schema/v{version}.sqlite"))
}

fn user_version(db: &Path) -> u32 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
}

/// A config in a temporary directory whose data directory holds `fixture`.
fn data_dir_with(fixture: &Path) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), KEEP_EVERYTHING);
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("energyload.db");
    std::fs::copy(fixture, &db).unwrap();
    (dir, config, db)
}

/// Every version below the current one has its fixture. With
/// `ENERGYLOAD_WRITE_SCHEMA_FIXTURES` set, the missing ones are written first
/// (run after adding a migration; see `tests/fixtures/schema/README.md`);
/// existing fixtures are never rewritten.
#[test]
fn every_earlier_schema_version_has_a_fixture() {
    let write = std::env::var_os(WRITE_FIXTURES).is_some();
    for version in 1..LATEST_VERSION {
        let path = fixture(version);
        if write && !path.exists() {
            seeds::build(&path, version);
            println!("wrote {}", path.display());
        }
        assert!(path.is_file(), "{} is missing: generate it with `{REGENERATE}`", path.display());
        assert_eq!(user_version(&path), version, "{} has the wrong schema version", path.display());
    }
}

#[test]
fn every_fixture_upgrades_to_the_current_schema_with_its_data_intact() {
    for version in 1..LATEST_VERSION {
        check_upgrade(&fixture(version), version);
    }
}

/// The seed step of the newest migration has no committed fixture yet (it
/// gets one when the next migration arrives): build it now and check the
/// current binary reads it, so the generator is ready for that day.
#[test]
fn the_generator_builds_the_current_version_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("v{LATEST_VERSION}.sqlite"));
    seeds::build(&path, LATEST_VERSION);
    check_upgrade(&path, LATEST_VERSION);
}

fn check_upgrade(fixture: &Path, version: u32) {
    let (_dir, config, db) = data_dir_with(fixture);
    let out = cli_ok(&config, &["migrate"]);
    let expected = if version == LATEST_VERSION {
        format!("schema version {version} is current")
    } else {
        format!("from version {version} to {LATEST_VERSION}")
    };
    assert!(out.contains(&expected), "v{version}: {out}");
    assert_eq!(user_version(&db), LATEST_VERSION);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let marker: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'fixture'", [], |r| r.get(0)).unwrap();
    assert_eq!(marker, seeds::META_MARKER);
    if version >= 3 {
        // Migration 7 copies bodies raw; `migrate` packs them all before it ends.
        let raw: i64 =
            conn.query_row("SELECT count(*) FROM messages WHERE body_format = 0", [], |r| r.get(0)).unwrap();
        assert_eq!(raw, 0, "v{version}: bodies left unpacked");
        let mark: i64 = conn
            .query_row("SELECT count(*) FROM meta WHERE key = 'pack_raw_bodies_after'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mark, 0, "v{version}: the packing mark stays after packing");
        let violations: i64 =
            conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(violations, 0, "v{version}");
    }
    drop(conn);
    if version >= 2 {
        let out = cli_ok(&config, &["audit", "verify"]);
        assert!(out.contains(&format!("{} events checked", seeds::AUDIT_EVENTS)), "v{version}: {out}");
    }

    let mut server = ChildServer::start(&config);
    let ready = crate::common::http::request("GET", &format!("{}/readyz", server.base()), &[], None);
    assert_eq!(ready.status, 200, "v{version}: {}", ready.text());
    if version >= 2 {
        check_identity(&server, version);
    }
    if version >= 3 {
        check_messages(&server);
    }
    if version >= 5 {
        check_user_locks(&server, &db);
    }
    server.signal(rustix::process::Signal::TERM);
    assert_eq!(server.wait(std::time::Duration::from_secs(30)), Some(0));
}

/// Users, keys and the audit chain seeded after migration 2.
fn check_identity(server: &ChildServer, version: u32) {
    let key = seeds::api_key();
    let [alice, bob, carol] = &seeds::USERS;
    let admin = token(server, &key, alice.username, alice.password);
    assert_eq!(login(server, &key, bob.username, bob.password).status, 200, "v{version}: bob logs in");
    assert_eq!(
        login(server, &key, carol.username, carol.password).status,
        401,
        "v{version}: carol is deactivated"
    );
    let revoked = login(server, &seeds::revoked_api_key(), alice.username, alice.password);
    assert_eq!(revoked.status, 401, "v{version}: the revoked key is refused");

    let users = call(server, "GET", "/api/v1/management/users", &key, &admin, None).json();
    let mut seen: Vec<(String, String)> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["username"].as_str().unwrap().into(), u["status"].as_str().unwrap().into()))
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> =
        seeds::USERS.iter().map(|u| (u.username.into(), u.status.into())).collect();
    assert_eq!(seen, expected, "v{version}");

    let verify = call(server, "GET", "/api/v1/management/audit/verify", &key, &admin, None).json();
    assert_eq!(verify["ok"], true, "v{version}: {verify}");
    assert!(
        verify["checked"].as_u64().unwrap() > seeds::AUDIT_EVENTS,
        "v{version}: logins appended: {verify}"
    );
}

/// Messages, attempts and reports seeded after migration 3.
fn check_messages(server: &ChildServer) {
    let key = seeds::api_key();
    let alice = &seeds::USERS[0];
    let admin = token(server, &key, alice.username, alice.password);
    let stats = call(server, "GET", "/api/v1/service/send/stats", &key, &admin, None).json();
    for (status, count) in seeds::MESSAGES_BY_STATUS {
        assert_eq!(stats["by_status"][status], count, "{status}: {stats}");
        // Since schema 9 the messageId lives only in the body, found by its key.
        let path = format!("/api/v1/service/send/messages?message_id=fixture-{status}");
        let found = call(server, "GET", &path, &key, &admin, None).json();
        let found: Vec<(&str, &str)> = found["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["messageId"].as_str().unwrap(), m["status"].as_str().unwrap()))
            .collect();
        assert_eq!(found, [(format!("fixture-{status}").as_str(), status)]);
    }
    let list =
        call(server, "GET", "/api/v1/service/send/messages?status=rejected", &key, &admin, None).json();
    let id = list["items"][0]["id"].as_str().expect("the rejected message").to_string();
    let path = format!("/api/v1/service/send/messages/{id}");
    let detail = call(server, "GET", &path, &key, &admin, None).json();
    assert_eq!(detail["messageId"], "fixture-rejected", "{detail}");
    assert_eq!(detail["esight_errors"].as_array().map(Vec::len), Some(1), "{detail}");
    assert_eq!(detail["attempt_log"].as_array().map(Vec::len), Some(1), "{detail}");
    assert_eq!(detail["message"]["header"]["messageId"], "fixture-rejected", "{detail}");
}

/// Username locks seeded after migration 5: the rows stay (unlock markers
/// included), and a started server holds no recorded lock in force (its
/// windows start empty): bob, recorded as locked, is shown unlocked and
/// logged in already in `check_identity`.
fn check_user_locks(server: &ChildServer, db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let rows: Vec<(String, Option<i64>, Option<i64>)> = conn
        .prepare("SELECT users.username, locked_until, unlocked_at FROM user_locks JOIN users ON users.id = user_id ORDER BY users.username")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<(String, Option<i64>, Option<i64>)> = seeds::USER_LOCKS
        .iter()
        .map(|(name, _, unlocked_at)| (name.to_string(), None, *unlocked_at))
        .collect();
    assert_eq!(rows, expected);
    let key = seeds::api_key();
    let alice = &seeds::USERS[0];
    let admin = token(server, &key, alice.username, alice.password);
    let users = call(server, "GET", "/api/v1/management/users", &key, &admin, None).json();
    for u in users["items"].as_array().unwrap() {
        assert_eq!(u["locked_until"], Value::Null, "{u}");
    }
}

#[test]
fn restore_migrates_an_older_backup() {
    let version = LATEST_VERSION - 1;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), KEEP_EVERYTHING);
    cli_ok(&config, &["migrate"]);
    let out = run_cli(&config, &["restore", fixture(version).to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("schema version {version} in the backup, migrated to {LATEST_VERSION}")),
        "{stdout}"
    );
    assert_eq!(user_version(&dir.path().join("data/energyload.db")), LATEST_VERSION);
    let events = seeds::AUDIT_EVENTS + 1;
    let out = cli_ok(&config, &["audit", "verify"]);
    assert!(out.contains(&format!("{events} events checked")), "{out}");
    let last: Value =
        serde_json::from_str(cli_ok(&config, &["audit", "export"]).lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "backup_restored", "{last}");
    assert_eq!(last["detail"]["backup_schema_version"], version, "{last}");
}
