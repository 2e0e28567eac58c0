//! eSight's error reports (`POST …/receive/errorjson`): correlation to a
//! delivered message (which becomes `rejected`), idempotency on `_id`,
//! `EmptyJson`, `InvalidJsonReceived` with quarantine, and who may post.

use std::time::Duration;

use serde_json::{Value, json};

use energyload::auth::NewApiKey;
use energyload::config::Secret;
use energyload::simulator::{ApplianceLink, Faults, SimConfig};

use crate::common::esight::{app_for, spawn_simulator, spawn_simulator_with, wait_for};
use crate::common::identity::PASSWORD;
use crate::common::session::{MESSAGES, Session, fixture, unique_id};
use crate::common::{Reply, spawn_app};

const ERRORJSON: &str = "/api/v1/service/receive/errorjson";
const WAIT: Duration = Duration::from_secs(30);

fn errorjson_fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/errorjson/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

/// A report for message `id`, with eSight's `_id` = `esight_id`.
fn report_for(id: &str, esight_id: &str) -> Value {
    let text = errorjson_fixture("report-template.json").replace("<id>", id);
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["_id"] = json!(esight_id);
    v
}

/// A user with `roles`, logged in; returns the token.
fn token_for(s: &Session, username: &str, roles: &str) -> String {
    let user = s.app.seed_user(username, roles);
    s.app.login(&s.key, &user.username, &user.password)
}

fn post_raw(s: &Session, token: &str, body: &[u8]) -> Reply {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("X-API-Key", s.key.as_str()),
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    s.app.request("POST", ERRORJSON, &headers, Some(body))
}

#[test]
fn a_report_is_correlated_and_rejects_its_message_once() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let id = s.accept_bytes(fixture("valid-1.json").as_bytes());
    s.wait_status(&id, "delivered", WAIT);
    let esight = token_for(&s, "esight-bot", "esight");

    let report = report_for(&id, &unique_id("esight"));
    let r = post_raw(&s, &esight, report.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let first = r.json();
    assert_eq!(first["correlated"], true, "{first}");
    assert_eq!(first["message_id"], id.as_str());
    assert_eq!(first["eSightId"], report["_id"]);
    assert_eq!(first["messageId"], format!("electricity_lu_20210131T0000_{id}").as_str());
    assert!(first["id"].is_string());

    let d = s.detail(&id);
    assert_eq!(d["status"], "rejected", "{d}");
    let errors = d["esight_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{d}");
    assert_eq!(errors[0]["errors"], report["errors"]);
    assert_eq!(errors[0]["eSightId"], report["_id"]);

    // The same report again: 200, the same answer, nothing stored twice.
    let r = post_raw(&s, &esight, report.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), first);
    assert_eq!(s.detail(&id)["esight_errors"].as_array().unwrap().len(), 1);
    let list = s.get_json(&format!("/api/v1/service/receive/errors?message_id={id}"));
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let esight_id = report["_id"].as_str().unwrap();
    let list = s.get_json(&format!("/api/v1/service/receive/errors?esight_id={esight_id}"));
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let one = s.get_json(&format!("/api/v1/service/receive/errors/{}", first["id"].as_str().unwrap()));
    assert_eq!(one["message_id"], id.as_str());
    assert_eq!(s.list("status=rejected")["items"].as_array().unwrap().len(), 1);

    // A rejected message can be sent again.
    let r = s.call("POST", &format!("{MESSAGES}/{id}/retry"), None);
    assert_eq!(r.status, 202, "{}", r.text());
    s.wait_status(&id, "delivered", WAIT);
    assert_eq!(sim.received_for(&id).len(), 2);
}

#[test]
fn a_report_for_an_unknown_message_is_kept_uncorrelated() {
    let s = Session::new(spawn_app());
    let report = report_for("999999", &unique_id("esight"));
    let r = post_raw(&s, &s.token, report.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["correlated"], false, "{v}");
    assert_eq!(v["message_id"], Value::Null, "{v}");
    let mut no_suffix = report_for("x", &unique_id("esight"));
    no_suffix["header"]["messageId"] = json!("nosuffix");
    let r = post_raw(&s, &s.token, no_suffix.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["correlated"], false);
    let list = s.get_json("/api/v1/service/receive/errors");
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn empty_reports_get_empty_json() {
    let s = Session::new(spawn_app());
    for body in ["", "null", "{}", "  {}  "] {
        post_raw(&s, &s.token, body.as_bytes()).assert_error(400, "EmptyJson");
    }
    let list = s.get_json("/api/v1/service/receive/errors");
    assert_eq!(list["items"], json!([]));
}

#[test]
fn malformed_reports_get_invalid_json_received_and_are_quarantined() {
    let s = Session::new(spawn_app());
    let invalid = errorjson_fixture("invalid.json");
    let r = post_raw(&s, &s.token, invalid.as_bytes());
    r.assert_error(400, "InvalidJsonReceived");
    let rid = r.header("x-request-id").unwrap().to_string();
    let mut missing_errors = report_for("1", "abc");
    missing_errors.as_object_mut().unwrap().remove("errors");
    post_raw(&s, &s.token, missing_errors.to_string().as_bytes()).assert_error(400, "InvalidJsonReceived");
    post_raw(&s, &s.token, b"{not json").assert_error(400, "InvalidJsonReceived");

    let q = s.get_json("/api/v1/service/receive/quarantine");
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{q}");
    let kept =
        items.iter().find(|i| i["request_id"] == rid.as_str()).expect("quarantined under its request id");
    assert_eq!(kept["body"], invalid.as_str(), "the raw body is kept");
    assert_eq!(kept["code"], "InvalidJsonReceived");
    assert_eq!(kept["size"], invalid.len());
    assert!(items.iter().any(|i| i["body"] == "{not json"), "{q}");
    let list = s.get_json("/api/v1/service/receive/errors");
    assert_eq!(list["items"], json!([]), "nothing stored as a report");
}

#[test]
fn only_esight_and_admins_post_reports_and_backoffice_reads_them() {
    let s = Session::new(spawn_app());
    let esight = token_for(&s, "esight-bot", "esight");
    let backoffice = token_for(&s, "office", "backoffice");
    let report = report_for("1", &unique_id("esight"));

    post_raw(&s, &backoffice, report.to_string().as_bytes()).assert_error(403, "Forbidden");
    assert_eq!(post_raw(&s, &esight, report.to_string().as_bytes()).status, 201);

    let read = |token: &str, path: &str| s.app.authed("GET", path, &s.key, token, None);
    for path in ["/api/v1/service/receive/errors", "/api/v1/service/receive/quarantine"] {
        assert_eq!(read(&backoffice, path).status, 200, "backoffice reads {path}");
        read(&esight, path).assert_error(403, "Forbidden");
    }
    let msg = json!({"x": 1});
    s.app.authed("POST", MESSAGES, &s.key, &esight, Some(&msg)).assert_error(403, "Forbidden");
    let r = s.app.request(
        "POST",
        ERRORJSON,
        &[("X-API-Key", s.key.as_str()), ("Content-Type", "application/json")],
        Some(report.to_string().as_bytes()),
    );
    r.assert_error(401, "Unauthorized");
}

#[test]
fn reports_posted_by_the_simulator_reject_the_delivered_message() {
    // The simulator must know the appliance's address and an esight login
    // before the appliance (which needs the simulator's URLs) starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = NewApiKey::generate().unwrap();
    let link = ApplianceLink {
        base_url: format!("http://127.0.0.1:{port}"),
        api_key: Secret::new(key.expose()),
        username: "esight-sim-bot".into(),
        password: Secret::new(PASSWORD),
    };
    let sim = spawn_simulator_with(SimConfig { appliance: Some(link), ..SimConfig::default() });
    let s = app_for(&sim, |c| c.server.listen = format!("127.0.0.1:{port}").parse().unwrap());
    let record = energyload::api::new_api_key_record(&key, "esight-sim".into(), None, None);
    let conn = rusqlite::Connection::open(s.app.data_dir().join("energyload.db")).unwrap();
    energyload::storage::identity::insert_api_key(&conn, &record).unwrap();
    s.app.seed_user("esight-sim-bot", "esight");
    sim.set_faults(Faults { report_fraction: 1.0, report_delay_ms: 100, ..Faults::default() });

    let id = s.accept_bytes(fixture("valid-3.json").as_bytes());
    let d = s.wait_status(&id, "rejected", WAIT);
    let errors = d["esight_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{d}");
    assert_eq!(errors[0]["messageId"], format!("temperature_lu_20210131T0000_{id}").as_str(), "{d}");
    let report = wait_for(WAIT, "the simulator's report record", || sim.sim().reports().into_iter().next());
    assert_eq!((report.outcome, report.http_status), ("posted", Some(201)), "{report:?}");
    assert_eq!(sim.received_for(&id).len(), 1);
}
