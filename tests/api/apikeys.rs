//! API keys through the real server: created by an admin and shown once,
//! never listed, accepted as header or `?key=`, refused when missing,
//! unknown, revoked or expired (`401 Unauthorized`), expiry in the past
//! refused at creation, and the per-key rate limit (`429` + `Retry-After`).

use base64::Engine;
use serde_json::json;

use crate::common::identity::{PASSWORD, eventually};
use crate::common::{spawn_app, spawn_app_with};

const KEYS: &str = "/api/v1/management/apikeys";

fn future(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[test]
fn a_created_key_is_shown_once_never_listed_and_works_at_once() {
    let app = spawn_app();
    let (key, token, admin) = app.admin_session();
    let r = app.authed("POST", KEYS, &key, &token, Some(&json!({"name": "feed", "expires_at": null})));
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let new_key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "feed");
    let prefix = created["prefix"].as_str().unwrap();
    assert!(new_key.starts_with(prefix), "{created}");
    let secret = new_key.splitn(3, '_').nth(2).expect("el_<id>_<secret>");
    let secret_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(secret).unwrap();
    assert!(secret_bytes.len() >= 16, "at least 128 random bits: {new_key}");

    // Usable right away, in the header and in the query.
    assert_eq!(app.login_reply(&new_key, "admin", PASSWORD, &[]).status, 200);
    let r = app.request(
        "POST",
        &format!("/login?key={new_key}"),
        &[("Content-Type", "application/json")],
        Some(json!({"username": "admin", "password": PASSWORD}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let list = app.authed("GET", KEYS, &key, &token, None);
    assert_eq!(list.status, 200);
    let text = list.text();
    assert!(!text.contains(&new_key) && !text.contains(&key), "a key in the list: {text}");
    let items = list.json()["items"].as_array().unwrap().clone();
    let row = items.iter().find(|k| k["id"] == id.as_str()).expect("listed");
    assert_eq!(row["name"], "feed");
    assert_eq!(row["prefix"], prefix);
    assert!(row.get("key").is_none() && row.get("key_hash").is_none(), "{row}");
    assert!(row["revoked_at"].is_null());
    // The key's use is recorded (flushed in the background).
    assert!(
        eventually(std::time::Duration::from_secs(10), || {
            let items = app.authed("GET", KEYS, &key, &token, None).json()["items"].clone();
            items.as_array().unwrap().iter().any(|k| k["id"] == id.as_str() && k["last_used_at"].is_string())
        }),
        "last_used_at never set"
    );

    let events = app.audit_events(&key, &token, "type=apikey_created");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["user_id"], admin.id.as_str());
    assert_eq!(events[0]["detail"]["target_api_key_id"], id.as_str());
    assert!(!app.authed("GET", "/api/v1/management/audit", &key, &token, None).text().contains(&new_key));
}

#[test]
fn a_revoked_key_is_refused_at_once() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let created = app.authed("POST", KEYS, &key, &token, Some(&json!({"name": "temp"}))).json();
    let (id, temp) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    let user_token = app.login(temp, "admin", PASSWORD);
    assert_eq!(app.authed("GET", "/user", temp, &user_token, None).status, 200);
    let r = app.authed("DELETE", &format!("{KEYS}/{id}"), &key, &token, None);
    assert_eq!(r.status, 200, "{}", r.text());
    app.authed("GET", "/user", temp, &user_token, None).assert_error(401, "Unauthorized");
    app.login_reply(temp, "admin", PASSWORD, &[]).assert_error(401, "Unauthorized");
    app.request(
        "GET",
        &format!("/user?key={temp}"),
        &[("Authorization", &format!("Bearer {user_token}"))],
        None,
    )
    .assert_error(401, "Unauthorized");
    // The token itself is fine with another key.
    assert_eq!(app.authed("GET", "/user", &key, &user_token, None).status, 200);
    let items = app.authed("GET", KEYS, &key, &token, None).json()["items"].clone();
    let row = items.as_array().unwrap().iter().find(|k| k["id"] == id).unwrap().clone();
    assert!(row["revoked_at"].is_string(), "{row}");
    assert_eq!(app.audit_events(&key, &token, "type=apikey_revoked").len(), 1);
    app.authed("DELETE", &format!("{KEYS}/no-such-key"), &key, &token, None).assert_error(404, "NotFound");
}

#[test]
fn missing_unknown_and_expired_keys_are_401() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let r = app.request("GET", "/user", &[("Authorization", &format!("Bearer {token}"))], None);
    r.assert_error(401, "Unauthorized");
    let longer = format!("{key}x");
    for bad in ["", "x", "el_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &longer, &key[..key.len() - 1]] {
        let r = app.request(
            "GET",
            "/user",
            &[("X-API-Key", bad), ("Authorization", &format!("Bearer {token}"))],
            None,
        );
        r.assert_error(401, "Unauthorized");
    }

    // Expiry in the past is refused at creation.
    let past = json!({"name": "old", "expires_at": "2020-01-01T00:00:00.000Z"});
    app.authed("POST", KEYS, &key, &token, Some(&past)).assert_error(400, "BadRequest");
    app.authed("POST", KEYS, &key, &token, Some(&json!({"name": "x", "expires_at": "tomorrow"})))
        .assert_error(400, "BadRequest");

    // A key that expires shortly works until then, and is refused after.
    let body = json!({"name": "short", "expires_at": future(2)});
    let short = app.authed("POST", KEYS, &key, &token, Some(&body));
    assert_eq!(short.status, 201, "{}", short.text());
    let short = short.json()["key"].as_str().unwrap().to_string();
    assert_eq!(app.authed("GET", "/user", &short, &token, None).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(3100));
    app.authed("GET", "/user", &short, &token, None).assert_error(401, "Unauthorized");
    app.login_reply(&short, "admin", PASSWORD, &[]).assert_error(401, "Unauthorized");

    // Repeats of a client and reason are coalesced (flood protection): each
    // reason is audited at once, and every refusal is counted.
    let denied = app.audit_events(&key, &token, "type=access_denied");
    for reason in ["missing_api_key", "invalid_api_key"] {
        assert!(denied.iter().any(|e| e["detail"]["reason"] == reason), "{reason}: {denied:?}");
    }
    assert!(refusals_counted(&app) >= 7);
}

/// Refusals counted on `/metrics` (every one, whether its audit event was
/// written at once or coalesced into a window's summary).
fn refusals_counted(app: &crate::common::TestApp) -> u64 {
    let text = app.get("/metrics").text();
    text.lines()
        .filter(|l| l.starts_with("energyload_access_denied_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_keys_own_rate_limit_answers_429_with_retry_after() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let body = json!({"name": "slow", "rate_per_sec": 0.5, "burst": 3});
    let r = app.authed("POST", KEYS, &key, &token, Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    let slow = r.json()["key"].as_str().unwrap().to_string();
    let statuses: Vec<u16> = (0..6).map(|_| app.authed("GET", "/user", &slow, &token, None).status).collect();
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst passes: {statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = app.authed("GET", "/user", &slow, &token, None);
    r.assert_error(429, "TooManyRequests");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Other keys are not affected; the limit is counted in metrics.
    assert_eq!(app.authed("GET", "/user", &key, &token, None).status, 200);
    let metrics = app.get("/metrics").text();
    let line = metrics.lines().find(|l| l.starts_with("energyload_rate_limited_total")).expect("metric");
    assert!(line.split_whitespace().last().unwrap().parse::<f64>().unwrap() >= 4.0, "{line}");
    let bad_rate = json!({"name": "bad", "rate_per_sec": 0});
    app.authed("POST", KEYS, &key, &token, Some(&bad_rate)).assert_error(400, "BadRequest");
}

#[test]
fn the_configured_default_rate_limit_applies_to_every_key() {
    let app = spawn_app_with(|c| {
        c.auth.api_key_rate_per_sec = 1.0;
        c.auth.api_key_burst = 2;
    });
    let key = app.seed_api_key("k");
    let statuses: Vec<u16> =
        (0..4).map(|_| app.request("GET", "/user", &[("X-API-Key", &key)], None).status).collect();
    // The first two pass the key check (and fail on the missing token).
    assert_eq!(statuses, vec![401, 401, 429, 429]);
    let r = app.request("GET", "/user", &[("X-API-Key", &key)], None);
    r.assert_error(429, "TooManyRequests");
    assert!(r.header("retry-after").is_some());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(app.request("GET", "/user", &[("X-API-Key", &key)], None).status, 401, "refilled");
}

/// Two active keys may not share a name: the same name again, in another
/// case or with other whitespace, is `409 Conflict` naming the existing
/// key; a revoked key's name is free again; concurrent creations of one
/// name leave exactly one key.
#[test]
fn an_active_keys_name_cannot_be_taken_twice() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let create = |name: &str| app.authed("POST", KEYS, &key, &token, Some(&json!({ "name": name })));
    let r = create("  backoffice   feed ");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["name"], "backoffice feed", "trimmed, inner whitespace made one space");
    let first = r.json()["id"].as_str().unwrap().to_string();

    for again in ["backoffice feed", "BACKOFFICE FEED", "Backoffice\tfeed", "\u{a0}backoffice  feed\n"] {
        let error = create(again).assert_error(409, "Conflict");
        assert_eq!(error["id"], first.as_str(), "{again:?}");
        assert_eq!(
            error["message"],
            "an active API key named \"backoffice feed\" exists; revoke it first or choose another name"
        );
    }
    let r = create("backoffice feed 2");
    assert_eq!(r.status, 201, "a different name: {}", r.text());
    create("back\u{1b}[2Joffice").assert_error(400, "BadRequest");

    // Revoked, its name can be given to a new key.
    assert_eq!(app.authed("DELETE", &format!("{KEYS}/{first}"), &key, &token, None).status, 200);
    let r = create("Backoffice Feed");
    assert_eq!(r.status, 201, "{}", r.text());

    // Racing creations of one name: one wins, the others are told why.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..6).map(|_| s.spawn(|| create("race").status)).collect();
        racers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    let items = app.authed("GET", KEYS, &key, &token, None).json()["items"].clone();
    let named = |n: &str| items.as_array().unwrap().iter().filter(|k| k["name"].as_str() == Some(n)).count();
    assert_eq!((named("race"), named("backoffice feed"), named("Backoffice Feed")), (1, 1, 1));
}
