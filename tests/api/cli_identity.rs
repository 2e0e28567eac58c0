//! Identity administration on the command line against a real child
//! `energyload serve`: the legacy users CSV import (old passwords log in,
//! the deactivated user does not, `e_sight` maps to `esight`), `user add`
//! with a generated password, `apikey create` printing the key last, user
//! and key changes seen by the running server within a second, and
//! `keys rotate` on a running server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::Reply;
use crate::common::http::request;
use crate::common::identity::eventually;
use crate::common::process::{ChildServer, run_cli, write_config};

const LEGACY_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy/backoffice_users.csv");
/// How long a running server may take to see a CLI change (the contract says
/// within a second; polled generously).
const SEEN_WITHIN: Duration = Duration::from_secs(3);

/// Runs a CLI command that must succeed; returns its stdout.
pub fn cli_ok(config: &Path, args: &[&str]) -> String {
    let out = run_cli(config, args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `apikey create NAME`: (key from the last stdout line, key id).
pub fn cli_key(config: &Path, name: &str) -> (String, String) {
    let out = cli_ok(config, &["apikey", "create", name]);
    let key = out.lines().last().unwrap().trim().to_string();
    assert!(!key.is_empty() && !key.contains(' '), "the key alone on the last line: {out:?}");
    let id = out.split("id ").nth(1).and_then(|s| s.split(')').next()).expect("id in the output").to_string();
    (key, id)
}

pub fn login(server: &ChildServer, key: &str, username: &str, password: &str) -> Reply {
    let body = json!({"username": username, "password": password}).to_string();
    request(
        "POST",
        &format!("{}/login", server.base()),
        &[("X-API-Key", key), ("Content-Type", "application/json"), ("Accept", "application/json")],
        Some(body.as_bytes()),
    )
}

pub fn token(server: &ChildServer, key: &str, username: &str, password: &str) -> String {
    let r = login(server, key, username, password);
    assert_eq!(r.status, 200, "{username}: {}", r.text());
    r.json()["access_token"].as_str().unwrap().to_string()
}

pub fn call(
    server: &ChildServer,
    method: &str,
    path: &str,
    key: &str,
    token: &str,
    body: Option<&Value>,
) -> Reply {
    let bearer = format!("Bearer {token}");
    let text = body.map(Value::to_string);
    let mut headers = vec![("X-API-Key", key), ("Authorization", bearer.as_str())];
    if text.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    request(method, &format!("{}{path}", server.base()), &headers, text.as_deref().map(str::as_bytes))
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    (dir, config)
}

fn generated_password(out: &str) -> String {
    out.lines().find_map(|l| l.strip_prefix("password: ")).expect("a generated password").trim().to_string()
}

#[test]
fn legacy_users_log_in_with_their_old_passwords_and_keep_ids_and_roles() {
    let (_dir, config) = setup();
    let out = cli_ok(&config, &["user", "import", LEGACY_CSV]);
    assert_eq!(out.matches("imported").count(), 4, "{out}");
    let again = cli_ok(&config, &["user", "import", LEGACY_CSV]);
    assert!(!again.contains("imported ") && again.matches("skipped").count() == 4, "idempotent: {again}");
    let (key, _) = cli_key(&config, "legacy");
    let server = ChildServer::start(&config);

    let legacy = [
        ("admin-legacy", "Legacy-admin-pass-1", "02ab1e52-ea8e-467d-ac24-44b61ad5925d", "admin"),
        ("backoffice1", "Backoffice-pass-22", "e91124a1-b236-4429-8511-4bc7ced7f1e6", "backoffice"),
        ("esight", "eSight-callback-pass-3", "39836055-32a7-4928-82dd-75965510b83d", "esight"),
    ];
    let mut tokens = Vec::new();
    for (name, password, id, role) in legacy {
        let t = token(&server, &key, name, password);
        let me = call(&server, "GET", "/user", &key, &t, None).json();
        assert_eq!(me["id"], id, "ids are kept");
        assert_eq!(me["roles"], json!([role]), "{name}");
        assert_eq!(me["status"], "active");
        tokens.push(t);
    }
    let r = login(&server, &key, "olduser", "Old-user-pass-444");
    r.assert_error(401, "InvalidCredentials");
    let wrong = login(&server, &key, "backoffice1", "Backoffice-pass-23");
    wrong.assert_error(401, "InvalidCredentials");

    // e_sight → esight: may post error reports; backoffice may not.
    let report = json!({"_id": "legacy-1", "header": {"messageId": "electricity_lu_x_1"}, "errors": []});
    let r = call(&server, "POST", "/api/v1/service/receive/errorjson", &key, &tokens[2], Some(&report));
    assert!(!matches!(r.status, 401 | 403), "esight posts error reports: {} {}", r.status, r.text());
    let r = call(&server, "POST", "/api/v1/service/receive/errorjson", &key, &tokens[1], Some(&report));
    r.assert_error(403, "Forbidden");
    let r = call(&server, "GET", "/api/v1/service/send/stats", &key, &tokens[1], None);
    assert_eq!(r.status, 200, "backoffice reads send stats: {}", r.text());
    let r = call(&server, "GET", "/api/v1/management/users", &key, &tokens[0], None);
    assert_eq!(r.status, 200, "the legacy admin is an admin");
    let listed = r.json()["items"].as_array().unwrap().iter().find(|u| u["username"] == "olduser").cloned();
    assert_eq!(listed.expect("olduser imported")["status"], "deactivated");
}

#[test]
fn cli_user_and_key_changes_are_seen_by_the_running_server() {
    // Polling a login until the server sees a CLI change counts each early
    // attempt as a failed login; under a loaded machine that reached the
    // default lockout (5) before the reload. Lockout is not under test here.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[auth]\nlockout_failures = 1000\nlockout_ip_failures = 1000\n");
    let out = cli_ok(&config, &["user", "add", "root", "--role", "admin"]);
    let root_password = generated_password(&out);
    assert!(root_password.len() >= 16, "{out}");
    let (key, _) = cli_key(&config, "first");
    let server = ChildServer::start(&config);
    let admin = token(&server, &key, "root", &root_password);

    // A user added while the server runs can log in within a second.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "later-password-1\n").unwrap();
    cli_ok(
        &config,
        &["user", "add", "later", "--role", "backoffice", "--password-file", pw.to_str().unwrap()],
    );
    let seen = eventually(SEEN_WITHIN, || login(&server, &key, "later", "later-password-1").status == 200);
    assert!(seen, "the running server did not see the new user");
    let later = token(&server, &key, "later", "later-password-1");
    assert_eq!(call(&server, "GET", "/api/v1/service/send/stats", &key, &later, None).status, 200);

    // Roles changed by the CLI apply to the existing token.
    cli_ok(&config, &["user", "roles", "later", "--role", "user"]);
    let demoted = eventually(SEEN_WITHIN, || {
        call(&server, "GET", "/api/v1/service/send/stats", &key, &later, None).status == 403
    });
    assert!(demoted, "roles changed by the CLI not applied");

    // A new password by the CLI: the old one stops working.
    let out = cli_ok(&config, &["user", "passwd", "later"]);
    let new_password = generated_password(&out);
    assert!(eventually(SEEN_WITHIN, || login(&server, &key, "later", &new_password).status == 200));
    login(&server, &key, "later", "later-password-1").assert_error(401, "InvalidCredentials");

    // Deactivation by the CLI refuses the user's tokens.
    cli_ok(&config, &["user", "deactivate", "later"]);
    assert!(eventually(SEEN_WITHIN, || call(&server, "GET", "/user", &key, &later, None).status == 401));
    let list = cli_ok(&config, &["user", "list"]);
    assert!(list.lines().any(|l| l.contains("later") && l.contains("deactivated")), "{list}");

    // A key created by the CLI works within a second; revoked, it is refused.
    let (second, second_id) = cli_key(&config, "second");
    assert!(eventually(SEEN_WITHIN, || call(&server, "GET", "/user", &second, &admin, None).status == 200));
    let keys = cli_ok(&config, &["apikey", "list"]);
    assert!(keys.contains(&second_id) && !keys.contains(&second), "{keys}");
    cli_ok(&config, &["apikey", "revoke", &second_id]);
    assert!(eventually(SEEN_WITHIN, || call(&server, "GET", "/user", &second, &admin, None).status == 401));
    assert_eq!(call(&server, "GET", "/user", &key, &admin, None).status, 200);
    assert!(!run_cli(&config, &["apikey", "revoke", "no-such-id"]).status.success());
    assert!(!run_cli(&config, &["user", "add", "root", "--role", "admin"]).status.success(), "duplicate");
    assert!(!run_cli(&config, &["user", "add", "x y", "--role", "admin"]).status.success(), "invalid name");
    assert!(!run_cli(&config, &["user", "add", "someone", "--role", "god"]).status.success(), "invalid role");

    // Every change is in the audit log.
    let audit = call(&server, "GET", "/api/v1/management/audit?limit=500", &key, &admin, None).json();
    let types: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in ["user_created", "user_modified", "user_deactivated", "apikey_created", "apikey_revoked"] {
        assert!(types.contains(&t), "{t} missing: {types:?}");
    }
}

/// A key made by `apikey create` while the server runs works at its very
/// first use (README's first steps paste `apikey create` and the first
/// `curl` back to back); before, the server knew it only after its next
/// directory reload and answered `401` in between. A made-up key stays
/// refused, and so does a revoked one once the server saw the revocation.
#[test]
fn a_key_made_by_the_cli_works_at_its_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = cli_ok(&config, &["user", "add", "root", "--role", "admin"]);
    let password = generated_password(&out);
    let (first, _) = cli_key(&config, "first");
    let server = ChildServer::start(&config);
    let admin = token(&server, &first, "root", &password);
    // Back to back, as a script would; no refused request in between (a
    // refused one that finds nothing new closes the on-demand re-read for
    // 10 ms).
    let fresh: Vec<(String, String)> = (0..5)
        .map(|n| {
            let (key, id) = cli_key(&config, &format!("fresh-{n}"));
            let r = call(&server, "GET", "/user", &key, &admin, None);
            assert_eq!(r.status, 200, "key {n} at its first use: {}", r.text());
            (key, id)
        })
        .collect();
    for (key, id) in &fresh {
        cli_ok(&config, &["apikey", "revoke", id]);
        assert!(eventually(SEEN_WITHIN, || call(&server, "GET", "/user", key, &admin, None).status == 401));
    }
    let made_up = format!("el_0123abcd_{}", "A".repeat(43));
    call(&server, "GET", "/user", &made_up, &admin, None).assert_error(401, "Unauthorized");
}

#[test]
fn keys_rotate_on_a_running_server_keeps_old_tokens_and_signs_new_ones_with_the_new_key() {
    let (dir, config) = setup();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "rotate-password-1\n").unwrap();
    cli_ok(&config, &["user", "add", "rot", "--role", "admin", "--password-file", pw.to_str().unwrap()]);
    let (key, _) = cli_key(&config, "k");
    let server = ChildServer::start(&config);
    let jwks =
        |s: &ChildServer| request("GET", &format!("{}/.well-known/jwks.json", s.base()), &[], None).json();
    let kid_of = |t: &str| {
        use base64::Engine;
        let h =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<Value>(&h).unwrap()["kid"].as_str().unwrap().to_string()
    };
    let old_token = token(&server, &key, "rot", "rotate-password-1");
    let old_kid = kid_of(&old_token);
    assert_eq!(jwks(&server)["keys"].as_array().unwrap().len(), 1);

    let out = cli_ok(&config, &["keys", "rotate"]);
    assert!(out.contains("new signing key") && !out.contains(&old_kid), "{out}");
    // The server reloads rotated keys (documented: within five seconds).
    assert!(
        eventually(Duration::from_secs(8), || jwks(&server)["keys"].as_array().unwrap().len() == 2),
        "JWKS never listed the new key"
    );
    let kids: Vec<String> = jwks(&server)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert!(kids.contains(&old_kid));
    assert_eq!(call(&server, "GET", "/user", &key, &old_token, None).status, 200, "old tokens still verify");
    let new_token = token(&server, &key, "rot", "rotate-password-1");
    let new_kid = kid_of(&new_token);
    assert_ne!(new_kid, old_kid, "new logins are signed with the new key");
    assert!(kids.contains(&new_kid));
    assert_eq!(call(&server, "GET", "/user", &key, &new_token, None).status, 200);
}

#[test]
fn the_bootstrap_admin_comes_from_a_password_file_never_from_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = cli_key(&write_config(dir.path(), ""), "k");
    let config = write_config(dir.path(), "[auth]\nbootstrap_admin = \"boss\"\n");
    // Named without a password: refused as a configuration error.
    let out = run_cli(&config, &["serve"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.bootstrap_admin_password"), "{out:?}");

    let pw = dir.path().join("boss.pw");
    std::fs::write(&pw, "Boss-password-from-file\n").unwrap();
    let server = ChildServer::start_with(
        std::process::Command::new(crate::common::process::bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("ENERGYLOAD_AUTH_BOOTSTRAP_ADMIN_PASSWORD_FILE", &pw),
    );
    let t = token(&server, &key, "boss", "Boss-password-from-file");
    assert_eq!(call(&server, "GET", "/user", &key, &t, None).json()["roles"], json!(["admin"]));
}

/// `apikey create` refuses a name an active key has (ignoring case and
/// extra whitespace), exit 1 with the existing key's id and how to go on;
/// after `apikey revoke` the name is free.
#[test]
fn apikey_create_refuses_a_name_an_active_key_has() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (_, first_id) = cli_key(&config, "feed");
    for again in ["feed", " Feed ", "FEED"] {
        let out = run_cli(&config, &["apikey", "create", again]);
        assert_eq!(out.status.code(), Some(1), "{again:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            format!(
                "error: an active API key named \"feed\" exists; revoke it first (energyload apikey revoke \
                 {first_id}) or choose another name"
            )
        );
        assert!(out.stdout.is_empty(), "no key printed: {out:?}");
    }
    let out = run_cli(&config, &["apikey", "create", "  "]);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), "error: name must be 1 to 100 characters");
    let list = cli_ok(&config, &["apikey", "list"]);
    assert_eq!(list.lines().filter(|l| l.contains(" feed ")).count(), 1, "{list}");

    cli_ok(&config, &["apikey", "revoke", &first_id]);
    let (_, second_id) = cli_key(&config, " Feed ");
    assert_ne!(second_id, first_id);
}
