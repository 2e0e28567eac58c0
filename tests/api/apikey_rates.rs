//! API key rate limits are parsed at the edge: no number a client sends as
//! `rate_per_sec` or `burst` makes the server panic; out-of-range values are
//! `400` in the contract's shape, no rate means no own limit, and a valid
//! limit works.

use serde_json::json;

use crate::common::spawn_app;

const KEYS: &str = "/api/v1/management/apikeys";

#[test]
fn hostile_rates_are_refused_and_never_panic_the_server() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let bodies = [
        json!({"name": "tiny", "rate_per_sec": 1e-300}),
        json!({"name": "huge", "rate_per_sec": 1e300}),
        json!({"name": "max", "rate_per_sec": f64::MAX}),
        json!({"name": "neg", "rate_per_sec": -1.0}),
        json!({"name": "under", "rate_per_sec": 0.0009}),
        json!({"name": "zero", "rate_per_sec": 0}),
        json!({"name": "burst0", "rate_per_sec": 5.0, "burst": 0}),
        json!({"name": "burstbig", "rate_per_sec": 5.0, "burst": 4_000_000_000_u64}),
        json!({"name": "burstonly", "burst": 5}),
        json!({"name": "burstneg", "rate_per_sec": 5.0, "burst": -1}),
    ];
    for body in bodies {
        let r = app.authed("POST", KEYS, &key, &token, Some(&body));
        let error = r.assert_error(400, "BadRequest");
        assert!(error["request_id"].is_string(), "{error}");
    }
    // Not representable as an f64 (JSON has no NaN or infinity): refused as malformed.
    let raw = br#"{"name": "inf", "rate_per_sec": 1e400}"#;
    let bearer = format!("Bearer {token}");
    let r = app.request(
        "POST",
        KEYS,
        &[("X-API-Key", &key), ("Authorization", &bearer), ("Content-Type", "application/json")],
        Some(raw),
    );
    r.assert_error(400, "BadRequest");

    // The server is still there, and a slow but valid limit works: the
    // first request passes, the next is 429 with a bounded Retry-After.
    let r = app.authed("POST", KEYS, &key, &token, Some(&json!({"name": "slow", "rate_per_sec": 0.001})));
    assert_eq!(r.status, 201, "{}", r.text());
    let slow = r.json()["key"].as_str().unwrap().to_string();
    app.wait_for_directory();
    assert_eq!(app.authed("GET", "/user", &slow, &token, None).status, 200);
    let limited = app.authed("GET", "/user", &slow, &token, None);
    limited.assert_error(429, "TooManyRequests");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1000).contains(&retry), "{retry}");

    // No rate: no own limit.
    let r = app.authed("POST", KEYS, &key, &token, Some(&json!({"name": "free", "rate_per_sec": null})));
    assert_eq!(r.status, 201, "{}", r.text());
    let listed = app.authed("GET", KEYS, &key, &token, None).json();
    let free = listed["items"].as_array().unwrap().iter().find(|k| k["name"] == "free").unwrap().clone();
    assert!(free["rate_limit"].is_null(), "{free}");
    assert_eq!(app.get("/healthz").status, 200);
}
