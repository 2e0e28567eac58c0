//! Lockout recovery on the command line against a real child `energyload
//! serve`: a user locked out by wrong passwords shows as locked in `user
//! list` and the API, `user unlock` lifts the lock in the running server at
//! her next login, `user passwd` lifts it too, and the refusals around it:
//! an unknown name is an error, a user who is not locked is told so, a
//! wrong password after an unlock still counts, and an unlock leaves a
//! locked client network locked.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli_identity::{call, cli_ok, login, token};
use crate::common::process::{ChildServer, run_cli, seed_admin_and_key, write_config};

const ADMIN_PASSWORD: &str = "admin-password-for-unlock-1";
const ALICE_PASSWORD: &str = "alice-password-for-unlock-1";
const WRONG: &str = "not-alices-password-123";

/// A data directory with `admin` (admin), `alice` (user) and an API key;
/// `extra` is appended to the config. Returns (dir, config, key).
fn setup(extra: &str) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), extra);
    let key = seed_admin_and_key(&config, ADMIN_PASSWORD, "unlock-tests");
    add_user(&config, "alice", ALICE_PASSWORD);
    (dir, config, key)
}

fn add_user(config: &Path, name: &str, password: &str) {
    let pw = config.with_file_name(format!("{name}.pw"));
    std::fs::write(&pw, password).unwrap();
    cli_ok(config, &["user", "add", name, "--role", "user", "--password-file", pw.to_str().unwrap()]);
}

/// Five wrong passwords lock `name` (the default `auth.lockout_failures`);
/// the right one is then refused with `429`.
fn lock_out(server: &ChildServer, key: &str, name: &str, password: &str) {
    for _ in 0..5 {
        login(server, key, name, WRONG).assert_error(401, "InvalidCredentials");
    }
    login(server, key, name, password).assert_error(429, "TooManyRequests");
}

/// The `user list` line of `name`.
fn list_line(config: &Path, name: &str) -> String {
    let out = cli_ok(config, &["user", "list"]);
    let line = out.lines().find(|l| l.split_whitespace().nth(1) == Some(name));
    line.unwrap_or_else(|| panic!("{name} in {out}")).to_string()
}

/// `name` as the management API shows it.
fn api_user(server: &ChildServer, key: &str, admin: &str, name: &str) -> Value {
    let users = call(server, "GET", "/api/v1/management/users", key, admin, None).json();
    users["items"].as_array().unwrap().iter().find(|u| u["username"] == name).cloned().expect("listed")
}

/// The audit events of `kind`, newest first.
fn events(server: &ChildServer, key: &str, admin: &str, kind: &str) -> Vec<Value> {
    let path = format!("/api/v1/management/audit?limit=500&type={kind}");
    let r = call(server, "GET", &path, key, admin, None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().unwrap().clone()
}

#[test]
fn user_unlock_lets_a_locked_user_in_at_her_next_login_while_the_server_runs() {
    let (_dir, config, key) = setup("");
    let server = ChildServer::start(&config);
    let admin = token(&server, &key, "admin", ADMIN_PASSWORD);
    lock_out(&server, &key, "alice", ALICE_PASSWORD);

    // Shown as locked, with until when, on the command line and in the API.
    let line = list_line(&config, "alice");
    assert!(line.contains("active locked until 20"), "{line}");
    assert!(!list_line(&config, "admin").contains("locked"), "only alice is locked");
    let until = api_user(&server, &key, &admin, "alice")["locked_until"].clone();
    let until = until.as_str().unwrap_or_else(|| panic!("locked_until: {until}")).to_string();
    let until_ms = energyload::clock::parse_rfc3339_millis(&until).expect("RFC 3339");
    let now = energyload::clock::now_millis();
    assert!(until_ms > now + 14 * 60_000 && until_ms <= now + 15 * 60_000, "{until}");
    let listed = line.split("until ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap();
    let listed_ms = energyload::clock::parse_rfc3339_millis(listed).expect("RFC 3339 in the list");
    assert!((0..1000).contains(&(listed_ms - until_ms)), "the same time, in whole seconds: {line} / {until}");

    let out = cli_ok(&config, &["user", "unlock", "alice"]);
    assert!(out.contains("unlocked alice"), "{out}");
    assert!(!list_line(&config, "alice").contains("locked"));
    assert_eq!(api_user(&server, &key, &admin, "alice")["locked_until"], Value::Null);
    // The running server lets her in at once: the first login after the unlock.
    assert_eq!(login(&server, &key, "alice", ALICE_PASSWORD).status, 200);

    let unlocked = events(&server, &key, &admin, "account_unlocked");
    assert_eq!(unlocked.len(), 1, "{unlocked:?}");
    assert_eq!(unlocked[0]["detail"]["via"], "cli");
    assert_eq!(unlocked[0]["detail"]["target_user_id"], api_user(&server, &key, &admin, "alice")["id"]);
    assert_eq!(unlocked[0]["user_id"], Value::Null, "the CLI is the actor, as for other CLI events");

    // Wrong passwords after an unlock count as before: a new lock, which the
    // earlier unlock does not lift.
    lock_out(&server, &key, "alice", ALICE_PASSWORD);
    assert!(list_line(&config, "alice").contains("locked until"));
    login(&server, &key, "alice", ALICE_PASSWORD).assert_error(429, "TooManyRequests");
}

#[test]
fn user_passwd_lifts_a_lock_and_the_new_password_signs_in_at_once() {
    let (_dir, config, key) = setup("");
    let server = ChildServer::start(&config);
    let admin = token(&server, &key, "admin", ADMIN_PASSWORD);
    lock_out(&server, &key, "alice", ALICE_PASSWORD);

    let pw = config.with_file_name("new.pw");
    std::fs::write(&pw, "alice-new-password-after-lock").unwrap();
    let out = cli_ok(&config, &["user", "passwd", "alice", "--password-file", pw.to_str().unwrap()]);
    assert!(out.contains("sign-in lock lifted"), "{out}");
    assert!(!list_line(&config, "alice").contains("locked"));
    // The old password no longer signs in; the new one does at once.
    login(&server, &key, "alice", ALICE_PASSWORD).assert_error(401, "InvalidCredentials");
    assert_eq!(login(&server, &key, "alice", "alice-new-password-after-lock").status, 200);

    let modified = events(&server, &key, &admin, "user_modified");
    let change = modified.iter().find(|e| e["detail"]["changed"] == "password").expect("audited");
    assert_eq!(change["detail"]["unlocked"], true, "{change}");
    assert_eq!(change["detail"]["via"], "cli");
}

#[test]
fn unlocking_an_unknown_user_fails_and_a_user_who_is_not_locked_is_told_so() {
    let (_dir, config, _key) = setup("");
    let out = run_cli(&config, &["user", "unlock", "nobody"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no user named nobody"), "{stderr}");

    let out = cli_ok(&config, &["user", "unlock", "alice"]);
    assert!(out.contains("alice is not locked"), "{out}");
    let export = cli_ok(&config, &["audit", "export"]);
    assert!(!export.contains("account_unlocked"), "nothing lifted, nothing audited: {export}");
}

#[test]
fn an_unlock_does_not_lift_the_lock_of_a_client_network() {
    // Seven failures from one address lock it; alice's five lock her too.
    let (_dir, config, key) = setup("[auth]\nlockout_ip_failures = 7\n");
    add_user(&config, "bob", "bob-password-for-unlock-22");
    let server = ChildServer::start(&config);
    let admin = token(&server, &key, "admin", ADMIN_PASSWORD);
    lock_out(&server, &key, "alice", ALICE_PASSWORD);
    for _ in 0..2 {
        login(&server, &key, "mallory", WRONG).assert_error(401, "InvalidCredentials");
    }
    login(&server, &key, "bob", "bob-password-for-unlock-22").assert_error(429, "TooManyRequests");

    let out = cli_ok(&config, &["user", "unlock", "alice"]);
    assert!(out.contains("unlocked alice"), "{out}");
    let r = call(&server, "POST", "/api/v1/management/users/user/no-such/unlock", &key, &admin, None);
    r.assert_error(404, "NotFound");
    login(&server, &key, "alice", ALICE_PASSWORD).assert_error(429, "TooManyRequests");
    login(&server, &key, "bob", "bob-password-for-unlock-22").assert_error(429, "TooManyRequests");
}
