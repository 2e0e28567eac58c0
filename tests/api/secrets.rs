//! No secret leaks: after a full identity flow against a child server
//! (logins right and wrong, keys in header and query, users and keys created
//! through the API, logout, a lockout), no password, API key or token appears
//! in the server's log files or output, in the audit export (API and CLI), or
//! in any error answer.

use std::path::Path;

use serde_json::json;

use super::cli_identity::{call, cli_key, cli_ok, login, token};
use crate::common::http::request;
use crate::common::process::{ChildServer, write_config};

fn read_tree(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&read_tree(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[test]
fn no_password_key_or_token_appears_in_logs_or_the_audit_export() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[auth]\nlockout_failures = 3\n");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "Secret-admin-pass-77\n").unwrap();
    cli_ok(&config, &["user", "add", "boss", "--role", "admin", "--password-file", pw.to_str().unwrap()]);
    let (key, _) = cli_key(&config, "main");
    let server = ChildServer::start(&config);
    let mut secrets: Vec<String> = vec!["Secret-admin-pass-77".into(), key.clone()];

    let admin = token(&server, &key, "boss", "Secret-admin-pass-77");
    secrets.push(admin.clone());
    // A wrong password is a secret too (often a typo of the right one).
    let typo = "Secret-admin-pass-78";
    login(&server, &key, "boss", typo).assert_error(401, "InvalidCredentials");
    secrets.push(typo.into());

    // The key in the query string.
    let r = request(
        "GET",
        &format!("{}/user?key={key}", server.base()),
        &[("Authorization", &format!("Bearer {admin}"))],
        None,
    );
    assert_eq!(r.status, 200);

    // A user and a key created through the API.
    let body = json!({"username": "worker", "password": "Worker-pass-12345", "roles": ["backoffice"]});
    let r = call(&server, "POST", "/api/v1/management/users/user", &key, &admin, Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    secrets.push("Worker-pass-12345".into());
    let r = call(
        &server,
        "PATCH",
        &format!("/api/v1/management/users/user/edit/{}", r.json()["id"].as_str().unwrap()),
        &key,
        &admin,
        Some(&json!({"password": "Worker-pass-67890"})),
    );
    assert_eq!(r.status, 200);
    secrets.push("Worker-pass-67890".into());
    let r =
        call(&server, "POST", "/api/v1/management/apikeys", &key, &admin, Some(&json!({"name": "api-made"})));
    let api_key = r.json()["key"].as_str().unwrap().to_string();
    secrets.push(api_key.clone());
    let worker = token(&server, &api_key, "worker", "Worker-pass-67890");
    secrets.push(worker.clone());
    // Refused credentials: a wrong key, a tampered token.
    let tampered = format!("{}x", &worker[..worker.len() - 1]);
    let r = call(&server, "GET", "/user", "el_wrongwrongwrongwrongwrong", &worker, None);
    assert_eq!(r.status, 401);
    assert!(!r.text().contains(&worker));
    let r = call(&server, "GET", "/user", &api_key, &tampered, None);
    assert_eq!(r.status, 401);
    assert!(!r.text().contains(&tampered));
    secrets.push(tampered);
    // Lockout, then logout.
    for _ in 0..4 {
        login(&server, &api_key, "worker", "Worker-wrong-000");
    }
    secrets.push("Worker-wrong-000".into());
    assert_eq!(call(&server, "POST", "/logout", &api_key, &worker, None).status, 200);

    let csv =
        call(&server, "GET", "/api/v1/management/audit?format=csv&limit=500", &key, &admin, None).text();
    let listed = call(&server, "GET", "/api/v1/management/audit?limit=500", &key, &admin, None).text();
    assert!(
        csv.contains("account_locked") && csv.contains("login_failure") && csv.contains("logout"),
        "{csv}"
    );
    let exported_json = cli_ok(&config, &["audit", "export"]);
    let exported_csv = cli_ok(&config, &["audit", "export", "--format", "csv"]);
    assert!(exported_json.contains("apikey_created"));
    let mut server = server;
    server.signal(rustix::process::Signal::TERM);
    assert_eq!(server.wait(std::time::Duration::from_secs(30)), Some(0));
    let stdout = server.lines.lock().unwrap().join("\n");
    let logs = read_tree(&dir.path().join("data/logs"));
    assert!(logs.contains("/login") && logs.contains("/user"), "the log files hold the access log: {logs}");
    assert!(logs.contains("key=<redacted>"), "the key query parameter is redacted");

    for (what, text) in [
        ("log files", &logs),
        ("server output", &stdout),
        ("audit csv", &csv),
        ("audit list", &listed),
        ("cli export", &exported_json),
        ("cli csv", &exported_csv),
    ] {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret ({}…) in the {what}", &secret[..6]);
        }
        // Not even the signature half of a token.
        for t in [&admin, &worker] {
            let signature = t.rsplit('.').next().unwrap();
            assert!(!text.contains(signature), "a token signature in the {what}");
        }
    }
}
