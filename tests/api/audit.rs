//! The audit log through the real server: events carry IP, MSISDN, request
//! id, path, actor and key; filters and the CSV download; the hash chain
//! verifies, and a row tampered with in the database is found by the API and
//! by `energyload audit verify`; user-supplied CR/LF is escaped and long text
//! capped; a security event that cannot be written turns the answer into 503.

use serde_json::json;

use crate::common::identity::PASSWORD;
use crate::common::process::run_cli;
use crate::common::{spawn_app, spawn_app_with};

const AUDIT: &str = "/api/v1/management/audit";

#[test]
fn events_carry_ip_msisdn_request_id_path_actor_and_key() {
    let app = spawn_app();
    let (key, token, admin) = app.admin_session();
    let rita = app.seed_user("rita", "user");
    let headers =
        [("X-MSISDN", "+352621123456"), ("X-Request-Id", "req-audit-1"), ("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(app.login_reply(&key, "rita", PASSWORD, &headers).status, 200);
    let events = app.audit_events(&key, &token, &format!("type=login_success&user_id={}", rita.id));
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    for field in [
        "id",
        "ts",
        "type",
        "ip",
        "msisdn",
        "user_id",
        "username",
        "api_key_id",
        "request_id",
        "path",
        "detail",
    ] {
        assert!(e.get(field).is_some(), "{field} missing: {e}");
    }
    assert_eq!(e["type"], "login_success");
    assert_eq!(e["ip"], "127.0.0.1", "X-Forwarded-For from an untrusted peer is ignored");
    assert_eq!(e["msisdn"], "+352621123456");
    assert_eq!(e["request_id"], "req-audit-1");
    assert_eq!(e["path"], "/login");
    assert_eq!(e["username"], "rita");
    assert!(e["api_key_id"].is_string());
    assert!(e["ts"].as_str().unwrap().ends_with('Z') && e["ts"].as_str().unwrap().contains('.'));

    // Filters: type, user_id, ip, since/until.
    let mine = app.audit_events(&key, &token, &format!("user_id={}", admin.id));
    assert!(!mine.is_empty() && mine.iter().all(|e| e["user_id"] == admin.id.as_str()));
    assert!(app.audit_events(&key, &token, "ip=10.9.9.9").is_empty());
    assert!(!app.audit_events(&key, &token, "ip=127.0.0.1").is_empty());
    assert!(app.audit_events(&key, &token, "since=2999-01-01T00:00:00.000Z").is_empty());
    assert!(app.audit_events(&key, &token, "until=2000-01-01T00:00:00.000Z").is_empty());
    let all = app.audit_events(&key, &token, "");
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    app.authed("GET", &format!("{AUDIT}?since=yesterday"), &key, &token, None)
        .assert_error(400, "BadRequest");

    // The CSV download holds the same events.
    let csv = app.authed("GET", &format!("{AUDIT}?format=csv"), &key, &token, None);
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.header("content-disposition").unwrap().contains("attachment"));
    let text = csv.text();
    assert!(
        text.starts_with("id,ts,type,ip,msisdn,user_id,username,api_key_id,request_id,path,detail\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("login_success") && l.contains("req-audit-1") && l.contains("+352621123456"))
    );
    // The CSV export is taken after the list, so it may have grown by the list's own events (none are audited).
    assert!(text.lines().count() > all.len(), "{} lines for {} events", text.lines().count(), all.len());
}

#[test]
fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let app = spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (key, token, _) = app.admin_session();
    app.login_reply(&key, "nobody", PASSWORD, &[("X-Forwarded-For", "203.0.113.9")]);
    let events = app.audit_events(&key, &token, "type=login_failure");
    assert_eq!(events[0]["ip"], "203.0.113.9");
}

#[test]
fn the_chain_verifies_and_a_tampered_row_is_found_by_the_api_and_the_cli() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    app.login_reply(&key, "nobody", "some-wrong-password", &[]);
    app.login_reply(&key, "admin", PASSWORD, &[]);
    let r = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None);
    assert_eq!(r.status, 200);
    let ok = r.json();
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["checked"].as_u64().unwrap() >= 3, "{ok}");
    let config = app.cli_config();
    let out = run_cli(&config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let failure = &app.audit_events(&key, &token, "type=login_failure")[0];
    let id: i64 = failure["id"].as_str().unwrap().parse().unwrap();
    let changed =
        app.db().execute("UPDATE audit_events SET username = 'someone-else' WHERE id = ?1", [id]).unwrap();
    assert_eq!(changed, 1);

    let report = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_broken"]["id"], id.to_string(), "{report}");
    let out = run_cli(&config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&id.to_string()), "the first broken id is named: {said}");
}

#[test]
fn a_deleted_row_breaks_the_chain_too() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    app.login_reply(&key, "nobody", "some-wrong-password", &[]);
    app.login_reply(&key, "admin", PASSWORD, &[]);
    let events = app.audit_events(&key, &token, "");
    let middle: i64 = events[1]["id"].as_str().unwrap().parse().unwrap();
    app.db().execute("DELETE FROM audit_events WHERE id = ?1", [middle]).unwrap();
    let report = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json();
    assert_eq!(report["ok"], false, "{report}");
}

#[test]
fn user_supplied_text_is_escaped_and_capped() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let forged = "mallory\r\n2026-01-01 INFO login_success admin";
    app.login_reply(&key, forged, "some-wrong-password", &[]).assert_error(401, "InvalidCredentials");
    let long = "m".repeat(5000);
    app.login_reply(&key, &long, "some-wrong-password", &[]);
    let r = app.authed(
        "POST",
        "/api/v1/management/apikeys",
        &key,
        &token,
        Some(&json!({"name": "line1\nline2"})),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let failures = app.audit_events(&key, &token, "type=login_failure");
    let names: Vec<&str> = failures.iter().map(|e| e["username"].as_str().unwrap()).collect();
    assert!(names.contains(&"mallory\\r\\n2026-01-01 INFO login_success admin"), "{names:?}");
    assert!(names.iter().all(|n| !n.contains(['\r', '\n'])));
    assert!(
        names.iter().all(|n| n.chars().count() <= 300),
        "capped: {:?}",
        names.iter().map(|n| n.len()).collect::<Vec<_>>()
    );
    let created = &app.audit_events(&key, &token, "type=apikey_created")[0];
    assert_eq!(created["detail"]["name"], "line1\\nline2");

    let csv = app.authed("GET", &format!("{AUDIT}?format=csv"), &key, &token, None).text();
    assert!(!csv.contains('\r'), "no raw CR in the export");
    assert!(
        csv.lines().all(|l| l.starts_with("id,") || l.split(',').next().unwrap().parse::<u64>().is_ok()),
        "one event per line:\n{csv}"
    );
}

#[test]
fn a_security_event_that_cannot_be_written_turns_the_answer_into_503() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let sam = app.seed_user("sam", "user");
    app.db()
        .execute_batch("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END;")
        .unwrap();
    let r = app.login_reply(&key, "sam", PASSWORD, &[]);
    r.assert_error(503, "ServiceUnavailable");
    assert!(!r.text().contains("disk full") && !r.text().contains("audit_events"), "{}", r.text());
    assert!(!r.text().contains("eyJ"), "no token handed out unaudited");
    app.login_reply(&key, "sam", "wrong-password-1", &[]).assert_error(503, "ServiceUnavailable");
    let body = json!({"username": "tina", "password": "tina-password-1", "roles": ["user"]});
    app.authed("POST", "/api/v1/management/users/user", &key, &token, Some(&body))
        .assert_error(503, "ServiceUnavailable");
    let edit = format!("/api/v1/management/users/user/edit/{}", sam.id);
    app.authed("PATCH", &edit, &key, &token, Some(&json!({"roles": ["admin"]})))
        .assert_error(503, "ServiceUnavailable");
    app.authed("POST", "/api/v1/management/apikeys", &key, &token, Some(&json!({"name": "unaudited"})))
        .assert_error(503, "ServiceUnavailable");
    app.db().execute_batch("DROP TRIGGER no_audit").unwrap();
    assert_eq!(app.login_reply(&key, "sam", PASSWORD, &[]).status, 200);
    // The refused changes did not happen unaudited.
    let users = app.authed("GET", "/api/v1/management/users", &key, &token, None).text();
    assert!(!users.contains("tina"), "a user was created without an audit event: {users}");
    let got = app.authed("GET", &format!("/api/v1/management/users/user/{}", sam.id), &key, &token, None);
    assert_eq!(got.json()["roles"], json!(["user"]), "a role change without an audit event");
    let keys = app.authed("GET", "/api/v1/management/apikeys", &key, &token, None).text();
    assert!(!keys.contains("unaudited"), "a key was created without an audit event: {keys}");
    assert_eq!(app.authed("GET", "/api/v1/management/audit/verify", &key, &token, None).json()["ok"], true);
}
