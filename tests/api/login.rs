//! `POST /login`, `POST /logout` and `GET /user` through the real server:
//! the text and JSON forms, identical refusals for unknown user / wrong
//! password / deactivated user, body validation, the API key in header and
//! query, brute-force lockout (per username and per IP) and its expiry, the
//! admin unlock, the bounded password pool, and re-hashing of weak hashes.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::common::identity::PASSWORD;
use crate::common::{Reply, TestApp, spawn_app, spawn_app_with};
use energyload::config::Duration as CfgDuration;

fn claims_of(token: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
    };
    (part(0), part(1))
}

/// The error object without its request id, to compare refusals.
fn error_without_request_id(r: &Reply) -> Value {
    let mut body = r.json();
    body["error"].as_object_mut().unwrap().remove("request_id");
    body
}

#[test]
fn login_answers_a_text_token_or_json_and_the_token_carries_the_contract_claims() {
    let app = spawn_app();
    let (key, _, _) = app.admin_session();
    let user = app.seed_user("alice", "backoffice,user");

    let text = app.login_reply(&key, "alice", PASSWORD, &[]);
    assert_eq!(text.status, 200, "{}", text.text());
    assert!(text.header("content-type").unwrap().starts_with("text/plain"));
    let token = text.text();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let json = app.login_reply(&key, "alice", PASSWORD, &[("Accept", "application/json")]);
    assert_eq!(json.status, 200);
    assert!(json.header("content-type").unwrap().starts_with("application/json"));
    let body = json.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access = body["access_token"].as_str().unwrap();

    let (header, claims) = claims_of(access);
    assert_eq!(header["alg"], "EdDSA");
    let jwks = app.get("/.well-known/jwks.json").json();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(claims["iss"], "energyload");
    assert_eq!(claims["aud"], "energyload");
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["roles"], json!(["backoffice", "user"]));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);
    assert_ne!(claims["jti"], claims_of(&token).1["jti"], "every token has its own jti");

    // Both tokens work.
    for t in [token.as_str(), access] {
        let me = app.authed("GET", "/user", &key, t, None);
        assert_eq!(me.status, 200, "{}", me.text());
        let me = me.json();
        assert_eq!(me["id"], user.id.as_str());
        assert_eq!(me["username"], "alice");
        assert_eq!(me["roles"], json!(["backoffice", "user"]));
        assert_eq!(me["status"], "active");
        assert!(me["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(me["updated_at"].as_str().is_some());
    }
}

#[test]
fn unknown_user_wrong_password_and_deactivated_user_get_the_same_401() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    app.seed_user("bob", "user");
    let carol = app.seed_user("carol", "user");
    let r = app.authed(
        "DELETE",
        &format!("/api/v1/management/users/user/deactivate/{}", carol.id),
        &key,
        &admin_token,
        None,
    );
    assert_eq!(r.status, 200);

    let unknown = app.login_reply(&key, "nobody", PASSWORD, &[]);
    let wrong = app.login_reply(&key, "bob", "not-the-password-at-all", &[]);
    let deactivated = app.login_reply(&key, "carol", PASSWORD, &[]);
    for r in [&unknown, &wrong, &deactivated] {
        r.assert_error(401, "InvalidCredentials");
    }
    assert_eq!(error_without_request_id(&unknown), error_without_request_id(&wrong));
    assert_eq!(error_without_request_id(&wrong), error_without_request_id(&deactivated));
    let header_names = |r: &Reply| {
        let mut h: Vec<String> =
            r.headers.iter().map(|(k, _)| k.clone()).filter(|k| k != "date" && k != "x-request-id").collect();
        h.sort();
        h
    };
    assert_eq!(header_names(&unknown), header_names(&wrong));
    assert_eq!(header_names(&wrong), header_names(&deactivated));

    let failures = app.audit_events(&key, &admin_token, "type=login_failure");
    assert_eq!(failures.len(), 3, "{failures:?}");
    let by_name = |n: &str| failures.iter().find(|e| e["username"] == n).unwrap().clone();
    assert!(by_name("nobody")["user_id"].is_null(), "no such account: user_id null");
    assert_eq!(by_name("carol")["user_id"], carol.id.as_str());
    assert!(by_name("bob")["user_id"].is_string());
}

#[test]
fn a_missing_field_or_wrong_type_is_400_and_login_needs_an_api_key() {
    let app = spawn_app();
    app.seed_user("dave", "user");
    let key = app.seed_api_key("k");
    let post =
        |headers: &[(&str, &str)], body: &str| app.request("POST", "/login", headers, Some(body.as_bytes()));
    let ct = ("Content-Type", "application/json");
    let k = ("X-API-Key", key.as_str());
    for body in [
        r#"{"username":"dave"}"#,
        r#"{"password":"x"}"#,
        r#"{"username":"dave","password":12345678901234}"#,
        r#"{"username":["dave"],"password":"x"}"#,
        r#"{"username":null,"password":"x"}"#,
        "[]",
        "{not json",
    ] {
        post(&[k, ct], body).assert_error(400, "BadRequest");
    }
    post(&[k, ("Content-Type", "text/plain")], r#"{"username":"dave","password":"x"}"#)
        .assert_error(415, "UnsupportedMediaType");
    // No key, a wrong key: 401 Unauthorized, before the credentials are looked at.
    let good = json!({"username": "dave", "password": PASSWORD}).to_string();
    post(&[ct], &good).assert_error(401, "Unauthorized");
    post(&[("X-API-Key", "el_not-a-real-key"), ct], &good).assert_error(401, "Unauthorized");
    // The key as query parameter (compat) works as well as the header.
    let r = app.request("POST", &format!("/login?key={key}"), &[ct], Some(good.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.text();
    let r = app.request(
        "GET",
        &format!("/user?key={key}"),
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app.request("GET", "/user?key=wrong", &[("Authorization", &format!("Bearer {token}"))], None);
    r.assert_error(401, "Unauthorized");
}

#[test]
fn logout_revokes_the_token_everywhere_and_is_audited() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    let eve = app.seed_user("eve", "backoffice");
    let token = app.login(&key, "eve", PASSWORD);
    let other = app.login(&key, "eve", PASSWORD);
    let r = app.authed("POST", "/logout", &key, &token, None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"revoked": true}));
    for (method, path) in [("GET", "/user"), ("POST", "/logout"), ("GET", "/api/v1/service/send/messages")] {
        let r = app.authed(method, path, &key, &token, None);
        r.assert_error(401, "Unauthorized");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"energyload\""));
    }
    assert_eq!(app.authed("GET", "/user", &key, &other, None).status, 200, "only that token is revoked");
    let events = app.audit_events(&key, &admin_token, "type=logout");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["user_id"], eve.id.as_str());
    assert_eq!(events[0]["path"], "/logout");
}

fn lockout_app(window: CfgDuration) -> TestApp {
    spawn_app_with(|c| {
        c.auth.lockout_failures = 5;
        c.auth.lockout_window = window;
    })
}

#[test]
fn five_failures_lock_the_username_without_checking_the_password_until_the_window_passes() {
    // The window is long enough that five argon2 checks on a loaded CI
    // machine stay inside it (with 3 s the first failure could age out
    // before the fifth, and the lock never came).
    const WINDOW_SECS: u64 = 8;
    let app = lockout_app(CfgDuration::from_secs(WINDOW_SECS));
    let (key, admin_token, _) = app.admin_session();
    app.seed_user("frank", "user");
    let started = Instant::now();
    for _ in 0..5 {
        app.login_reply(&key, "frank", "wrong-password-123", &[]).assert_error(401, "InvalidCredentials");
    }
    for password in ["wrong-password-123", PASSWORD] {
        let r = app.login_reply(&key, "frank", password, &[]);
        r.assert_error(429, "TooManyRequests");
        let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=WINDOW_SECS).contains(&retry), "Retry-After {retry}");
        // The message says when, in words, matching the header.
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        let when = if retry == 1 { "1 second".to_string() } else { format!("{retry} seconds") };
        assert_eq!(message, format!("too many failed logins; try again in {when}"));
    }
    // Another username from the same IP is not locked by frank's failures.
    assert_eq!(app.login_reply(&key, "admin", PASSWORD, &[]).status, 200);
    let locked = app.audit_events(&key, &admin_token, "type=account_locked");
    assert_eq!(locked.len(), 1, "account_locked exactly once: {locked:?}");
    assert_eq!(locked[0]["username"], "frank");
    // Attempts while locked are not password checks: no further login_failure.
    let failures = app.audit_events(&key, &admin_token, "type=login_failure");
    assert_eq!(failures.len(), 5, "{failures:?}");

    // The lock lifts by itself once the window has passed.
    let mut lifted = None;
    while started.elapsed() < Duration::from_secs(4 * WINDOW_SECS) {
        std::thread::sleep(Duration::from_millis(250));
        let r = app.login_reply(&key, "frank", PASSWORD, &[]);
        if r.status == 200 {
            lifted = Some(started.elapsed());
            break;
        }
        assert_eq!(r.status, 429, "{}", r.text());
    }
    let lifted = lifted.expect("the lock never lifted");
    let window = Duration::from_secs(WINDOW_SECS);
    assert!(
        lifted >= window - Duration::from_millis(500),
        "lifted after {lifted:?}, before the {window:?} window"
    );
}

#[test]
fn an_admin_can_lift_a_lockout_early_and_it_is_audited() {
    let app = lockout_app(CfgDuration::from_secs(900));
    let (key, admin_token, admin) = app.admin_session();
    let grace = app.seed_user("grace", "user");
    for _ in 0..5 {
        app.login_reply(&key, "grace", "wrong-password-123", &[]);
    }
    app.login_reply(&key, "grace", PASSWORD, &[]).assert_error(429, "TooManyRequests");
    let user_path = format!("/api/v1/management/users/user/{}", grace.id);
    let locked_until = app.authed("GET", &user_path, &key, &admin_token, None).json()["locked_until"].clone();
    assert!(locked_until.as_str().is_some_and(|t| t.ends_with('Z')), "{locked_until}");

    // Only an admin may unlock: a backoffice user is refused and grace stays locked.
    let path = format!("/api/v1/management/users/user/{}/unlock", grace.id);
    app.seed_user("heidi", "backoffice");
    let heidi = app.login(&key, "heidi", PASSWORD);
    app.authed("POST", &path, &key, &heidi, None).assert_error(403, "Forbidden");
    app.login_reply(&key, "grace", PASSWORD, &[]).assert_error(429, "TooManyRequests");

    let r = app.authed("POST", &path, &key, &admin_token, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let after = app.authed("GET", &user_path, &key, &admin_token, None).json();
    assert_eq!(after["locked_until"], Value::Null, "{after}");
    assert_eq!(app.login_reply(&key, "grace", PASSWORD, &[]).status, 200);
    let events = app.audit_events(&key, &admin_token, "type=account_unlocked");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["user_id"], admin.id.as_str());
    assert_eq!(events[0]["detail"]["target_user_id"], grace.id.as_str());
    assert_eq!(events[0]["detail"]["was_locked"], true);
    let r = app.authed("POST", "/api/v1/management/users/user/no-such-id/unlock", &key, &admin_token, None);
    r.assert_error(404, "NotFound");
}

#[test]
fn an_admin_password_reset_lifts_a_lock_and_later_wrong_passwords_count_again() {
    let app = lockout_app(CfgDuration::from_secs(900));
    let (key, admin_token, _) = app.admin_session();
    let ivan = app.seed_user("ivan", "user");
    for _ in 0..5 {
        app.login_reply(&key, "ivan", "wrong-password-123", &[]).assert_error(401, "InvalidCredentials");
    }
    app.login_reply(&key, "ivan", PASSWORD, &[]).assert_error(429, "TooManyRequests");

    let new_password = "ivan-reset-password-after-lock";
    let edit = format!("/api/v1/management/users/user/edit/{}", ivan.id);
    let r = app.authed("PATCH", &edit, &key, &admin_token, Some(&json!({"password": new_password})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["locked_until"], Value::Null, "{}", r.text());
    assert_eq!(app.login_reply(&key, "ivan", new_password, &[]).status, 200);
    let modified = app.audit_events(&key, &admin_token, "type=user_modified");
    assert_eq!(modified[0]["detail"]["unlocked"], true, "{modified:?}");

    // The reset is no standing pass: five wrong passwords lock ivan again.
    for _ in 0..5 {
        app.login_reply(&key, "ivan", "wrong-password-123", &[]).assert_error(401, "InvalidCredentials");
    }
    app.login_reply(&key, "ivan", new_password, &[]).assert_error(429, "TooManyRequests");
    let user =
        app.authed("GET", &format!("/api/v1/management/users/user/{}", ivan.id), &key, &admin_token, None);
    assert!(user.json()["locked_until"].is_string(), "{}", user.text());
}

#[test]
fn failures_from_one_ip_across_usernames_lock_that_ip() {
    let app = spawn_app_with(|c| {
        c.auth.lockout_ip_failures = 3;
        c.auth.lockout_window = CfgDuration::from_secs(900);
    });
    let (key, admin_token, _) = app.admin_session();
    for name in ["u1-name", "u2-name", "u3-name"] {
        app.login_reply(&key, name, "wrong-password-123", &[]).assert_error(401, "InvalidCredentials");
    }
    let r = app.login_reply(&key, "admin", PASSWORD, &[]);
    r.assert_error(429, "TooManyRequests");
    assert!(r.header("retry-after").is_some());
    let locked = app.audit_events(&key, &admin_token, "type=account_locked");
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0]["detail"]["by"], "ip");
    assert_eq!(locked[0]["ip"], "127.0.0.1");
}

#[test]
fn logins_beyond_the_password_pool_get_503_with_retry_after() {
    let app = spawn_app_with(|c| {
        c.auth.password_hash_concurrency = 1;
        c.auth.password_queue_timeout = CfgDuration::from_millis(1);
        c.auth.lockout_failures = 1000;
        c.auth.lockout_ip_failures = 1000;
    });
    app.seed_user("henry", "user");
    let key = app.seed_api_key("k");
    let barrier = std::sync::Barrier::new(12);
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    app.login_reply(&key, "henry", PASSWORD, &[])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(!busy.is_empty(), "12 concurrent logins with one hashing slot and a 1 ms queue: no 503");
    for r in &busy {
        r.assert_error(503, "ServiceUnavailable");
        assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()));
    }
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 503));
    assert!(replies.iter().any(|r| r.status == 200), "the slot holder logs in");
}

#[test]
fn a_weak_hash_is_rehashed_with_the_current_settings_on_the_next_login() {
    let app = spawn_app();
    let key = app.seed_api_key("k");
    let ida = app.seed_user("ida", "user");
    let weak = energyload::auth::passwords::hash_password(
        &energyload::domain::user::NewPassword::parse(PASSWORD.into(), 12).unwrap(),
        &energyload::auth::Argon2Settings::new(1024, 1, 1).unwrap(),
    )
    .unwrap();
    app.db().execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", [&weak, &ida.id]).unwrap();
    app.wait_for_directory();
    assert_eq!(app.login_reply(&key, "ida", PASSWORD, &[]).status, 200);
    let stored: String =
        app.db().query_row("SELECT password_hash FROM users WHERE id = ?1", [&ida.id], |r| r.get(0)).unwrap();
    assert_ne!(stored, weak);
    assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
    app.wait_for_directory();
    assert_eq!(app.login_reply(&key, "ida", PASSWORD, &[]).status, 200, "the new hash verifies");
}
