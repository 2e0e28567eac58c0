//! The open operational endpoints and the conventions every response keeps.

use crate::common::spawn_app;

#[test]
fn health_answers_the_compat_smile() {
    let app = spawn_app();
    let r = app.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), ":-)");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
}

#[test]
fn healthz_reports_ok() {
    let app = spawn_app();
    let r = app.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"status": "ok"}));
}

#[test]
fn readyz_runs_real_checks() {
    let app = spawn_app();
    let r = app.get("/readyz");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["status"], "ok");
    for check in ["database", "storage", "migrations"] {
        assert_eq!(body["checks"][check]["status"], "ok", "{check}: {body}");
    }
    assert!(body["checks"]["storage"]["free_bytes"].as_u64().unwrap() > 0);
    // Without [esight] the appliance is ready (ingest works) but says that
    // nothing is delivered and which keys to set.
    let delivery = &body["checks"]["delivery"];
    assert_eq!(delivery["status"], "ok", "{body}");
    assert_eq!(delivery["state"], "not_configured", "{body}");
    let detail = delivery["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("not delivered") && detail.contains("consumption_url"), "{body}");
}

#[test]
fn readyz_names_no_missing_setting_once_esight_is_configured() {
    let sim = crate::common::esight::spawn_simulator();
    let s = crate::common::esight::app_for(&sim, |_| {});
    let body = s.app.get("/readyz").json();
    assert_eq!(body["checks"]["delivery"]["state"], "running", "{body}");
    assert!(body["checks"]["delivery"].get("detail").is_none(), "{body}");
}

#[test]
fn readyz_fails_under_the_disk_floor() {
    let app = crate::common::spawn_app_with(|c| c.storage.min_free_bytes = u64::MAX);
    let r = app.get("/readyz");
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["status"], "fail");
    assert_eq!(body["checks"]["storage"]["status"], "fail");
    assert_eq!(body["checks"]["database"]["status"], "ok");
}

#[test]
fn readyz_fails_while_the_database_refuses_writes() {
    let app = crate::common::spawn_app_with(|c| {
        c.storage.busy_timeout = energyload::config::Duration::from_millis(200);
    });
    let db = rusqlite::Connection::open(app.data_dir().join("energyload.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = app.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["checks"]["database"]["status"], "fail");
    db.execute_batch("ROLLBACK").unwrap();
    assert_eq!(app.get("/readyz").status, 200);
}

#[test]
fn version_names_version_commit_and_build_time() {
    let app = spawn_app();
    let body = app.get("/version").json();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let commit = body["commit"].as_str().unwrap();
    assert!(commit == "unknown" || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())));
    let built = body["built"].as_str().unwrap();
    assert!(energyload::clock::parse_rfc3339_millis(built).is_some(), "{built}");
}

#[test]
fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app();
    app.get("/health");
    app.get("/health");
    app.get("/nope");
    let r = app.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    assert!(text.contains("energyload_http_requests_total{route=\"/health\",status=\"200\"} 2\n"), "{text}");
    assert!(
        text.contains("energyload_http_requests_total{route=\"(unmatched)\",status=\"404\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE energyload_http_request_duration_seconds histogram"));
    assert!(text.contains("energyload_http_request_duration_seconds_count{route=\"/health\"} 2\n"));
    let size_line = text.lines().find(|l| l.starts_with("energyload_db_size_bytes ")).expect("db size");
    let size: f64 = size_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(size > 0.0);
}

#[test]
fn request_ids_are_echoed_when_valid_and_made_up_otherwise() {
    let app = spawn_app();
    let r = app.request("GET", "/health", &[("X-Request-Id", "client-id_1.2")], None);
    assert_eq!(r.header("x-request-id"), Some("client-id_1.2"));
    let r = app.request("GET", "/health", &[("X-Request-Id", "has space")], None);
    let id = r.header("x-request-id").unwrap();
    assert_ne!(id, "has space");
    assert!(!id.is_empty());
    let long = "x".repeat(129);
    let r = app.request("GET", "/health", &[("X-Request-Id", &long)], None);
    assert_ne!(r.header("x-request-id"), Some(long.as_str()));
}

#[test]
fn unknown_paths_are_404_in_the_error_shape() {
    let app = spawn_app();
    let r = app.request("GET", "/no/such/path", &[("X-Request-Id", "rid-404")], None);
    let e = r.assert_error(404, "NotFound");
    assert_eq!(e["request_id"], "rid-404");
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let app = spawn_app();
    let r = app.request("DELETE", "/readyz", &[], None);
    r.assert_error(405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("GET"));
}
