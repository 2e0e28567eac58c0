//! Password changes end sessions, and new passwords must be strong: an
//! admin's reset and `energyload user passwd` revoke every token of the user
//! (also after a restart, and seen by a running server within a second);
//! `POST /user/password` checks the current password under the login
//! lockout, ends the caller's other sessions and keeps the caller's own;
//! weak new passwords are refused on every path (API create/edit, own
//! change, CLI add/passwd) with a reason, never the password.

use std::time::Duration;

use serde_json::json;

use crate::common::identity::{PASSWORD, eventually};
use crate::common::process::run_cli;
use crate::common::{TestApp, spawn_app, spawn_app_with, start};

const CHANGE: &str = "/user/password";
const STRONG: &str = "plum-Tractor-57-velvet-Orbit";
const STRONGER: &str = "Quartz-lagoon-88-Mitten-drift";
/// Long enough, and a top password: zxcvbn scores it 0 or 1.
const WEAK: &str = "password1234";

fn me(app: &TestApp, key: &str, token: &str) -> u16 {
    app.authed("GET", "/user", key, token, None).status
}

fn change(app: &TestApp, key: &str, token: &str, current: &str, new: &str) -> crate::common::Reply {
    let body = json!({"current_password": current, "new_password": new});
    app.authed("POST", CHANGE, key, token, Some(&body))
}

#[test]
fn an_admin_password_reset_ends_every_session_of_the_user_also_after_a_restart() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    let bob = app.seed_user("bob", "backoffice");
    let (first, second) = (app.login(&key, "bob", PASSWORD), app.login(&key, "bob", PASSWORD));
    assert_eq!((me(&app, &key, &first), me(&app, &key, &second)), (200, 200));

    // A roles-only edit ends nothing.
    let path = format!("/api/v1/management/users/user/edit/{}", bob.id);
    let r = app.authed("PATCH", &path, &key, &admin_token, Some(&json!({"roles": ["backoffice", "user"]})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(me(&app, &key, &first), 200);

    let r = app.authed("PATCH", &path, &key, &admin_token, Some(&json!({"password": STRONG})));
    assert_eq!(r.status, 200, "{}", r.text());
    for token in [&first, &second] {
        app.authed("GET", "/user", &key, token, None).assert_error(401, "Unauthorized");
    }
    assert_eq!(me(&app, &key, &admin_token), 200, "the admin's own session is untouched");
    app.login_reply(&key, "bob", PASSWORD, &[]).assert_error(401, "InvalidCredentials");
    let fresh = app.login(&key, "bob", STRONG);

    let (dir, config) = app.stop();
    let app = start(dir, config);
    app.authed("GET", "/user", &key, &first, None).assert_error(401, "Unauthorized");
    assert_eq!(me(&app, &key, &fresh), 200, "a token of the new password survives the restart");
}

#[test]
fn user_passwd_on_the_command_line_ends_the_sessions_a_running_server_holds() {
    let app = spawn_app();
    let key = app.seed_api_key("cli");
    app.seed_user("carla", "user");
    let token = app.login(&key, "carla", PASSWORD);
    assert_eq!(me(&app, &key, &token), 200);

    let pw = app.dir.path().join("carla.pw");
    std::fs::write(&pw, format!("{STRONG}\n")).unwrap();
    let out =
        run_cli(&app.cli_config(), &["user", "passwd", "carla", "--password-file", pw.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s) ended"), "{out:?}");
    // The server polls the database's auth generation every 500 ms.
    assert!(
        eventually(Duration::from_secs(3), || me(&app, &key, &token) == 401),
        "the CLI's revocation never reached the running server"
    );
    assert_eq!(me(&app, &key, &app.login(&key, "carla", STRONG)), 200);
}

#[test]
fn users_change_their_own_password_and_only_their_other_sessions_end() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    let dora = app.seed_user("dora", "esight");
    let (mine, other) = (app.login(&key, "dora", PASSWORD), app.login(&key, "dora", PASSWORD));
    let eve = app.seed_user("eve", "user");
    let eves = app.login(&key, "eve", PASSWORD);

    let r = change(&app, &key, &mine, PASSWORD, STRONG);
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(me(&app, &key, &mine), 200, "the caller's own token stays valid");
    app.authed("GET", "/user", &key, &other, None).assert_error(401, "Unauthorized");
    assert_eq!(me(&app, &key, &eves), 200, "another user's sessions are untouched");
    app.login_reply(&key, "dora", PASSWORD, &[]).assert_error(401, "InvalidCredentials");
    app.login(&key, "dora", STRONG);

    // The revoked session cannot use the endpoint either (it would pick its own password).
    change(&app, &key, &other, STRONG, STRONGER).assert_error(401, "Unauthorized");
    // No token, or a key alone: refused before any password check.
    let body = json!({"current_password": STRONG, "new_password": STRONGER}).to_string();
    let keyless = app.request(
        "POST",
        CHANGE,
        &[("Authorization", &format!("Bearer {mine}")), ("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    keyless.assert_error(401, "Unauthorized");
    let tokenless = app.request(
        "POST",
        CHANGE,
        &[("X-API-Key", &key), ("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    tokenless.assert_error(401, "Unauthorized");

    let events = app.audit_events(&key, &admin_token, "type=password_changed");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["user_id"], dora.id.as_str());
    assert_eq!(events[0]["detail"]["sessions_ended"], 1);
    assert!(!events[0].to_string().contains(STRONG), "{}", events[0]);
    assert_eq!(eve.username, "eve");
}

#[test]
fn a_wrong_current_password_is_401_and_counts_toward_the_lockout() {
    let app = spawn_app_with(|c| c.auth.lockout_failures = 3);
    let key = app.seed_api_key("k");
    app.seed_user("finn", "user");
    let token = app.login(&key, "finn", PASSWORD);
    for _ in 0..3 {
        change(&app, &key, &token, "not-my-password", STRONG).assert_error(401, "InvalidCredentials");
    }
    // Locked: even the right current password is not checked now, and the
    // lock is the login's, so /login is refused too.
    let locked = change(&app, &key, &token, PASSWORD, STRONG);
    locked.assert_error(429, "TooManyRequests");
    assert!(locked.header("retry-after").is_some());
    app.login_reply(&key, "finn", PASSWORD, &[]).assert_error(429, "TooManyRequests");
    assert_eq!(me(&app, &key, &token), 200, "the password did not change and the session lives");
}

#[test]
fn weak_or_malformed_new_passwords_are_400_with_the_reason_on_every_api_path() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    let gil = app.seed_user("gil", "user");
    let token = app.login(&key, "gil", PASSWORD);

    let r = change(&app, &key, &token, PASSWORD, WEAK);
    let error = r.assert_error(400, "BadRequest");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("too easy to guess"), "{message}");
    assert!(!message.contains(WEAK), "{message}");
    // The username inside the password counts against it.
    change(&app, &key, &token, PASSWORD, "gil-gil-gil-gil-gil").assert_error(400, "BadRequest");
    change(&app, &key, &token, PASSWORD, "short").assert_error(400, "BadRequest");
    change(&app, &key, &token, PASSWORD, &"Zq9!".repeat(33)).assert_error(400, "BadRequest");
    for body in [
        json!({"new_password": STRONG}),
        json!({"current_password": PASSWORD}),
        json!({"current_password": PASSWORD, "new_password": STRONG, "user_id": "someone-else"}),
        json!({"current_password": PASSWORD, "new_password": 12345678901234_u64}),
    ] {
        app.authed("POST", CHANGE, &key, &token, Some(&body)).assert_error(400, "BadRequest");
    }
    assert_eq!(me(&app, &key, &token), 200);
    app.login(&key, "gil", PASSWORD);

    let create = json!({"username": "hank", "password": WEAK, "roles": ["user"]});
    let r = app.authed("POST", "/api/v1/management/users/user", &key, &admin_token, Some(&create));
    assert!(r.assert_error(400, "BadRequest")["message"].as_str().unwrap().contains("too easy to guess"));
    let path = format!("/api/v1/management/users/user/edit/{}", gil.id);
    let r = app.authed("PATCH", &path, &key, &admin_token, Some(&json!({"password": WEAK})));
    r.assert_error(400, "BadRequest");
    app.login(&key, "gil", PASSWORD);
}

#[test]
fn the_strength_floor_is_configurable_and_zero_turns_it_off() {
    let app = spawn_app_with(|c| c.auth.min_password_score = 0);
    let key = app.seed_api_key("k");
    app.seed_user("ida", "user");
    let token = app.login(&key, "ida", PASSWORD);
    assert_eq!(change(&app, &key, &token, PASSWORD, WEAK).status, 204);
    app.login(&key, "ida", WEAK);
}

#[test]
fn the_cli_refuses_a_weak_password_file_and_generated_passwords_pass() {
    let app = spawn_app();
    let config = app.cli_config();
    let pw = app.dir.path().join("weak.pw");
    std::fs::write(&pw, format!("{WEAK}\n")).unwrap();
    let out =
        run_cli(&config, &["user", "add", "joan", "--role", "user", "--password-file", pw.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("too easy to guess") && !stderr.contains(WEAK), "{stderr}");

    let out = run_cli(&config, &["user", "add", "joan", "--role", "user"]);
    assert!(out.status.success(), "{out:?}");
    let out = run_cli(&config, &["user", "passwd", "joan", "--password-file", pw.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    let out = run_cli(&config, &["user", "passwd", "joan"]);
    assert!(out.status.success(), "a generated password passes the floor: {out:?}");
}

#[test]
fn concurrent_wrong_current_passwords_get_at_most_lockout_failures_checks() {
    let app = spawn_app_with(|c| {
        c.auth.lockout_failures = 5;
        c.auth.lockout_ip_failures = 1000;
        c.auth.password_queue_timeout = energyload::config::Duration::from_secs(120);
    });
    let key = app.seed_api_key("k");
    let user = app.seed_user("guessed", "user");
    let token = app.login(&key, &user.username, PASSWORD);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let (app, key, token) = (&app, &key, &token);
                s.spawn(move || {
                    change(app, key, token, &format!("wrong-guess-{i}"), "an0ther-Strong-passphrase!").status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 27, "{statuses:?}");
}
