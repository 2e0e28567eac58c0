//! Attacks on sign-in, through the real server (and the real binary for the
//! CLI): a burst of concurrent wrong passwords against one account, huge or
//! malformed usernames, the keyless `POST /admin/session` as a password
//! oracle, hashes and settings above the argon2 verify cap, legacy hashes
//! that keep known accounts slower than unknown ones, and a login right
//! after `user add`. Each test also sends the request that tries to get
//! around its check.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli_identity::{cli_key, cli_ok, login};
use crate::common::http::{raw_connect, raw_read_all, raw_send};
use crate::common::identity::PASSWORD;
use crate::common::process::{ChildServer, run_cli, write_config};
use crate::common::{Reply, TestApp, spawn_app, spawn_app_with};
use energyload::config::Duration as CfgDuration;

/// The error object without its request id, to compare refusals.
fn error_without_request_id(r: &Reply) -> Value {
    let mut body = r.json();
    body["error"].as_object_mut().unwrap().remove("request_id");
    body
}

/// `POST /admin/session` (no API key: the page's sign-in is open).
fn admin_sign_in(app: &TestApp, username: &str, password: &str) -> Reply {
    let body = json!({"username": username, "password": password}).to_string();
    app.request("POST", "/admin/session", &[("Content-Type", "application/json")], Some(body.as_bytes()))
}

/// The value of an unlabelled counter in `GET /metrics`.
fn counter(app: &TestApp, name: &str) -> u64 {
    let text = app.get("/metrics").text();
    let line = text.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("{name}"));
    line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
}

/// Sends `count` wrong-password logins for `username` at once, one thread each.
fn concurrent_wrong_logins(app: &TestApp, key: &str, username: &str, count: usize) -> Vec<Reply> {
    let barrier = std::sync::Barrier::new(count);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    app.login_reply(key, username, "wrong-password-123", &[])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_wrong_passwords_for_one_account_get_at_most_lockout_failures_password_checks() {
    let app = spawn_app_with(|c| {
        c.auth.lockout_failures = 5;
        c.auth.lockout_ip_failures = 1000;
        c.auth.lockout_window = CfgDuration::from_secs(900);
        // Every attempt that gets a hashing slot waits for it: no 503 muddles the count.
        c.auth.password_queue_timeout = CfgDuration::from_secs(120);
    });
    let (key, admin_token, _) = app.admin_session();
    app.seed_user("victim", "backoffice");
    let failures_before = counter(&app, "energyload_login_failures_total");

    let replies = concurrent_wrong_logins(&app, &key, "victim", 64);
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 401).collect();
    let locked: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(refused.len() + locked.len(), 64, "only 401 or 429: {:?}", replies.iter().map(|r| r.status));
    assert_eq!(refused.len(), 5, "password checks for one account in one window");
    for r in &refused {
        r.assert_error(401, "InvalidCredentials");
    }
    for r in &locked {
        r.assert_error(429, "TooManyRequests");
        assert!(r.header("retry-after").is_some());
    }
    // The audit and the metrics count exactly the checks that ran.
    let failures = app.audit_events(&key, &admin_token, "type=login_failure");
    assert_eq!(failures.len(), 5, "{failures:?}");
    let account_locked = app.audit_events(&key, &admin_token, "type=account_locked");
    assert_eq!(account_locked.len(), 1, "{account_locked:?}");
    assert_eq!(counter(&app, "energyload_login_failures_total") - failures_before, 5);

    // Around it: another spelling of the name, or the admin page's sign-in,
    // is the same account and the same window; the right password too.
    app.login_reply(&key, "VICTIM", PASSWORD, &[]).assert_error(429, "TooManyRequests");
    admin_sign_in(&app, "Victim", PASSWORD).assert_error(429, "TooManyRequests");
    assert_eq!(app.audit_events(&key, &admin_token, "type=login_failure").len(), 5);
}

#[test]
fn oversized_sign_in_bodies_get_413_and_unparsable_usernames_are_plain_wrong_credentials() {
    let app = spawn_app_with(|c| {
        c.auth.lockout_failures = 2;
        c.auth.lockout_ip_failures = 9;
        c.auth.lockout_window = CfgDuration::from_secs(900);
    });
    let (key, admin_token, _) = app.admin_session();

    // A 1 MiB username, declared: refused before the body is read.
    let huge = json!({"username": "x".repeat(1024 * 1024), "password": "wrong-password-123"}).to_string();
    for (path, key_header) in [("/login", format!("X-API-Key: {key}\r\n")), ("/admin/session", String::new())]
    {
        let mut s = raw_connect(app.addr, Duration::from_secs(10));
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\n{key_header}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            huge.len()
        );
        raw_send(&mut s, head.as_bytes());
        raw_send(&mut s, &huge.as_bytes()[..8 * 1024]);
        let (bytes, _) = raw_read_all(&mut s);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "RequestEntityTooLarge", "{path}: {text}");
        assert!(body["error"]["request_id"].is_string() && body["error"]["message"].is_string());
    }
    // Around it: the same body chunked, with no length declared.
    let mut s = raw_connect(app.addr, Duration::from_secs(10));
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    raw_send(&mut s, head.as_bytes());
    let chunk = &huge.as_bytes()[..8 * 1024];
    raw_send(&mut s, format!("{:x}\r\n", chunk.len()).as_bytes());
    raw_send(&mut s, chunk);
    raw_send(&mut s, b"\r\n");
    let (bytes, _) = raw_read_all(&mut s);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 413") && text.contains("RequestEntityTooLarge"), "chunked: {text}");
    // A body that fits (a long but valid password) is still read.
    assert_eq!(app.login_reply(&key, "admin", PASSWORD, &[]).status, 200);

    // Usernames outside the contract's syntax: the same 401 as an unknown user.
    let unknown = app.login_reply(&key, "nobody-here", "wrong-password-123", &[]);
    unknown.assert_error(401, "InvalidCredentials");
    let long = "y".repeat(65);
    for name in [long.as_str(), "has space", "", "ad", "ädmin", "admin\n"] {
        let r = app.login_reply(&key, name, "wrong-password-123", &[]);
        r.assert_error(401, "InvalidCredentials");
        assert_eq!(error_without_request_id(&r), error_without_request_id(&unknown), "{name:?}");
    }
    // They are not usernames, so they lock no username, not even past the
    // username limit (2): the IP window (9) counts them like any failure.
    let r = app.login_reply(&key, &long, "wrong-password-123", &[]);
    r.assert_error(401, "InvalidCredentials");
    assert_eq!(app.login_reply(&key, "admin", PASSWORD, &[]).status, 200, "8 failures from this IP so far");
    app.login_reply(&key, &long, "wrong-password-123", &[]).assert_error(401, "InvalidCredentials");
    app.login_reply(&key, "admin", PASSWORD, &[]).assert_error(429, "TooManyRequests");
    let failures = app.audit_events(&key, &admin_token, "type=login_failure");
    assert_eq!(failures.len(), 9, "{failures:?}");
}

#[test]
fn the_admin_page_sign_in_is_no_password_oracle_and_is_locked_out_like_login() {
    let app = spawn_app_with(|c| {
        c.auth.lockout_failures = 3;
        c.auth.lockout_ip_failures = 1000;
        c.auth.lockout_window = CfgDuration::from_secs(900);
    });
    let (key, admin_token, _) = app.admin_session();
    app.seed_user("plainuser", "user");
    app.seed_user("callback", "esight");
    app.seed_user("office", "backoffice");

    // The oracle pair: a right and a wrong password of an account the page
    // does not admit; then an unknown user.
    let right = admin_sign_in(&app, "plainuser", PASSWORD);
    let wrong = admin_sign_in(&app, "callback", "wrong-password-123");
    let right_esight = admin_sign_in(&app, "callback", PASSWORD);
    let unknown = admin_sign_in(&app, "nobody-here", PASSWORD);
    for r in [&right, &wrong, &right_esight, &unknown] {
        r.assert_error(401, "InvalidCredentials");
        assert_eq!(error_without_request_id(r), error_without_request_id(&wrong));
        assert!(r.header("set-cookie").is_none(), "no cookie on a failure");
    }
    let failures = app.audit_events(&key, &admin_token, "type=login_failure");
    assert_eq!(failures.len(), 4, "{failures:?}");
    // The page still admits its roles.
    let office = admin_sign_in(&app, "office", PASSWORD);
    assert_eq!(office.status, 200, "{}", office.text());
    assert!(office.header("set-cookie").is_some_and(|c| c.contains("HttpOnly")));

    // A refused role counts as a failure, or the lock not coming would tell
    // the right password: the third right password locks plainuser too.
    admin_sign_in(&app, "plainuser", PASSWORD).assert_error(401, "InvalidCredentials");
    admin_sign_in(&app, "plainuser", PASSWORD).assert_error(401, "InvalidCredentials");
    let locked = admin_sign_in(&app, "plainuser", PASSWORD);
    locked.assert_error(429, "TooManyRequests");
    assert!(locked.header("retry-after").is_some());
    // The user's own API login (where the role is fine) shares the window.
    app.login_reply(&key, "plainuser", PASSWORD, &[]).assert_error(429, "TooManyRequests");

    // Wrong passwords on the page lock an admin-page account like /login does,
    // and /login failures count on the page.
    app.login_reply(&key, "office", "wrong-password-123", &[]).assert_error(401, "InvalidCredentials");
    admin_sign_in(&app, "office", "wrong-password-123").assert_error(401, "InvalidCredentials");
    admin_sign_in(&app, "OFFICE", "wrong-password-123").assert_error(401, "InvalidCredentials");
    admin_sign_in(&app, "office", PASSWORD).assert_error(429, "TooManyRequests");
    app.login_reply(&key, "office", PASSWORD, &[]).assert_error(429, "TooManyRequests");
}

#[test]
fn the_admin_page_sign_in_counts_against_the_ip_window() {
    let app = spawn_app_with(|c| {
        c.auth.lockout_failures = 1000;
        c.auth.lockout_ip_failures = 3;
        c.auth.lockout_window = CfgDuration::from_secs(900);
    });
    app.seed_user("office", "backoffice");
    for name in ["guess-one", "guess-two", "guess-three"] {
        admin_sign_in(&app, name, "wrong-password-123").assert_error(401, "InvalidCredentials");
    }
    admin_sign_in(&app, "office", PASSWORD).assert_error(429, "TooManyRequests");
}

/// The original service's hash of `admin-legacy` (`m=102400,t=2,p=8`).
fn legacy_admin_hash() -> String {
    let csv = include_str!("../fixtures/legacy/backoffice_users.csv");
    let line = csv.lines().find(|l| l.contains(",admin-legacy,")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn a_legacy_cost_hash_is_rehashed_with_the_current_parameters_at_the_first_login() {
    let app = spawn_app();
    let key = app.seed_api_key("k");
    let old = app.seed_user("old-timer", "user");
    let legacy = legacy_admin_hash();
    assert!(legacy.starts_with("$argon2id$v=19$m=102400,t=2,p=8$"));
    app.db().execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", [&legacy, &old.id]).unwrap();
    app.wait_for_directory();

    // A wrong password changes nothing.
    app.login_reply(&key, "old-timer", "Legacy-admin-pass-2", &[]).assert_error(401, "InvalidCredentials");
    let stored = |app: &TestApp| -> String {
        app.db().query_row("SELECT password_hash FROM users WHERE id = ?1", [&old.id], |r| r.get(0)).unwrap()
    };
    assert_eq!(stored(&app), legacy);

    assert_eq!(app.login_reply(&key, "old-timer", "Legacy-admin-pass-1", &[]).status, 200);
    let rehashed = stored(&app);
    assert!(rehashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{rehashed}");
    app.wait_for_directory();
    assert_eq!(
        app.login_reply(&key, "old-timer", "Legacy-admin-pass-1", &[]).status,
        200,
        "still the password"
    );
    assert_eq!(stored(&app), rehashed, "a current hash is left alone");
}

#[test]
fn a_hash_above_the_verify_cap_is_refused_by_user_import_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let greedy =
        "$argon2id$v=19$m=4194304,t=1,p=1$ZW5lcmd5bG9hZC1kdW1teQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let slow = greedy.replace("m=4194304,t=1", "m=1024,t=65");
    for bad in [greedy.to_string(), slow] {
        let csv = dir.path().join("users.csv");
        let mut f = std::fs::File::create(&csv).unwrap();
        writeln!(f, "id,username,password,type,creator,status").unwrap();
        writeln!(
            f,
            "11111111-1111-4111-8111-111111111111,fine-user,\"{}\",user,root,active",
            legacy_admin_hash()
        )
        .unwrap();
        writeln!(f, "22222222-2222-4222-8222-222222222222,greedy-user,\"{bad}\",user,root,active").unwrap();
        drop(f);
        let out = run_cli(&config, &["user", "import", csv.to_str().unwrap()]);
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("line 3") && stderr.contains("costs more than this server verifies"),
            "{stderr}"
        );
        let list = cli_ok(&config, &["user", "list"]);
        assert!(!list.contains("greedy-user") && !list.contains("fine-user"), "nothing imported: {list}");
    }
    // At the cap is fine.
    let csv = dir.path().join("users.csv");
    let at_cap = greedy.replace("m=4194304,t=1", "m=262144,t=64");
    std::fs::write(
        &csv,
        format!("id,username,password,type,creator,status\n33333333-3333-4333-8333-333333333333,capped-user,\"{at_cap}\",user,root,active\n"),
    )
    .unwrap();
    let out = cli_ok(&config, &["user", "import", csv.to_str().unwrap()]);
    assert!(out.contains("imported capped-user"), "{out}");
}

#[test]
fn argon2_settings_above_the_verify_cap_fail_config_loading_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, key) in [
        ("[auth]\nargon2_memory_kib = 262145\n", "auth.argon2_memory_kib"),
        ("[auth]\nargon2_iterations = 65\n", "auth.argon2_iterations"),
    ] {
        let config = write_config(dir.path(), extra);
        let out = run_cli(&config, &["config", "check"]);
        assert!(!out.status.success(), "{extra}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key) && stderr.contains("verify cap"), "{stderr}");
    }
    let config = write_config(dir.path(), "[auth]\nargon2_memory_kib = 262144\nargon2_iterations = 64\n");
    let out = run_cli(&config, &["config", "check"]);
    assert!(out.status.success(), "at the cap: {out:?}");
}

/// More than `auth::directory::ON_DEMAND_CHECK_INTERVAL` (10 ms): the
/// pace of on-demand directory reloads.
const ON_DEMAND_PACE: Duration = Duration::from_millis(150);

#[test]
fn a_user_added_by_the_cli_logs_in_at_once_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "fresh-password-1\n").unwrap();
    let pw = pw.to_str().unwrap();
    let (key, _) = cli_key(&config, "first");
    let server = ChildServer::start(&config);
    // The server's directory has settled (the key works) before the user exists.
    login(&server, &key, "fresh", "fresh-password-1").assert_error(401, "InvalidCredentials");
    // That login for an unknown name re-read the directory; the next such
    // read may come 10 ms later (the on-demand reload is paced), so the
    // user is added after that: what is under test is the login right after.
    std::thread::sleep(ON_DEMAND_PACE);

    cli_ok(&config, &["user", "add", "fresh", "--role", "user", "--password-file", pw]);
    let r = login(&server, &key, "fresh", "fresh-password-1");
    assert_eq!(r.status, 200, "right after user add: {}", r.text());

    // The same for an import, which a login for a wrong spelling cannot spoil.
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        format!(
            "id,username,password,type,creator,status\n44444444-4444-4444-8444-444444444444,admin-legacy,\"{}\",admin,root,active\n",
            legacy_admin_hash()
        ),
    )
    .unwrap();
    std::thread::sleep(ON_DEMAND_PACE);
    cli_ok(&config, &["user", "import", csv.to_str().unwrap()]);
    let r = login(&server, &key, "Admin-Legacy", "Legacy-admin-pass-1");
    assert_eq!(r.status, 200, "right after user import: {}", r.text());
}
