//! The message list (filters, pagination), detail, retry (single and bulk),
//! delivery statistics and the delivery metrics, over messages that really
//! went through the simulator.

use std::collections::BTreeSet;
use std::time::Duration;

use energyload::simulator::Faults;
use serde_json::{Value, json};

use crate::common::esight::{Sim, app_for, spawn_simulator};
use crate::common::session::{MESSAGES, Session, fixture, message, message_for, unique_id};

const WAIT: Duration = Duration::from_secs(30);

/// Three messages: two delivered (lu and hu) and one failed (unknown meter).
struct World {
    sim: Sim,
    s: Session,
    lu: (String, String),
    hu: (String, String),
    unknown: String,
}

fn world() -> World {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let lu_mid = unique_id("lu");
    let lu = s.accept(&message(&lu_mid));
    s.wait_status(&lu, "delivered", WAIT);
    let hu_mid = unique_id("hu");
    let hu = s.accept(&message_for(&hu_mid, "hu", "electricity", "1001", "HU_1001_Elec_2"));
    s.wait_status(&hu, "delivered", WAIT);
    let unknown = s.accept_bytes(fixture("unknown-meter.json").as_bytes());
    s.wait_status(&unknown, "failed", WAIT);
    World { sim, s, lu: (lu, lu_mid), hu: (hu, hu_mid), unknown }
}

fn ids(v: &Value) -> BTreeSet<String> {
    v["items"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_list_filters_and_pages() {
    let w = world();
    let (s, lu, hu, unknown) = (&w.s, &w.lu.0, &w.hu.0, &w.unknown);
    assert_eq!(ids(&s.list("")), set(&[lu, hu, unknown]));
    assert_eq!(ids(&s.list("status=delivered")), set(&[lu, hu]));
    assert_eq!(ids(&s.list("status=failed")), set(&[unknown]));
    assert_eq!(ids(&s.list("status=pending")), set(&[]));
    assert_eq!(ids(&s.list("meter_id=HU_1001_Elec_2")), set(&[hu]));
    assert_eq!(ids(&s.list("site_id=VPC")), set(&[lu, unknown]));
    assert_eq!(ids(&s.list("local_market=hu")), set(&[hu]));
    assert_eq!(ids(&s.list("data_feed_type=electricity")), set(&[lu, hu, unknown]));
    assert_eq!(ids(&s.list(&format!("message_id={}", w.lu.1))), set(&[lu]));
    assert_eq!(ids(&s.list("status=delivered&site_id=VPC")), set(&[lu]));

    let created = s.detail(hu)["created_at"].as_str().unwrap().to_string();
    assert_eq!(ids(&s.list(&format!("since={created}"))), set(&[hu, unknown]));
    assert_eq!(ids(&s.list(&format!("until={created}"))), set(&[lu]));
    s.call("GET", &format!("{MESSAGES}?since=yesterday"), None).assert_error(400, "BadRequest");
    s.call("GET", &format!("{MESSAGES}?status=lost"), None).assert_error(400, "BadRequest");

    // Newest first, one per page, every item once.
    let mut seen = Vec::new();
    let mut query = "limit=1".to_string();
    loop {
        let page = s.list(&query);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1, "{page}");
        seen.extend(items.iter().map(|m| m["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=1&cursor={c}"),
            None => break,
        }
        assert!(seen.len() <= 3, "pagination does not end");
    }
    assert_eq!(seen, vec![unknown.clone(), hu.clone(), lu.clone()]);

    let item = &s.list(&format!("message_id={}", w.hu.1))["items"][0];
    for field in [
        "id",
        "messageId",
        "status",
        "meter_id",
        "site_id",
        "local_market",
        "data_feed_type",
        "datapoints",
        "attempts",
        "created_at",
        "updated_at",
        "delivered_at",
        "next_attempt_at",
        "error_code",
    ] {
        assert!(item.get(field).is_some(), "{field} missing from {item}");
    }
    assert_eq!(
        (
            &item["meter_id"],
            &item["site_id"],
            &item["local_market"],
            &item["data_feed_type"],
            &item["datapoints"]
        ),
        (&json!("HU_1001_Elec_2"), &json!("1001"), &json!("hu"), &json!("electricity"), &json!(2))
    );
}

#[test]
fn the_detail_shows_message_attempts_and_errors() {
    let w = world();
    let d = w.s.detail(&w.unknown);
    assert_eq!(d["status"], "failed");
    assert_eq!(d["error_code"], "NoMeterId");
    assert_eq!(d["message"], serde_json::from_str::<Value>(&fixture("unknown-meter.json")).unwrap());
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 1, "{d}");
    for field in ["at", "outcome", "http_status", "error", "duration_ms"] {
        assert!(log[0].get(field).is_some(), "{field} missing: {d}");
    }
    assert_eq!(log[0]["outcome"], "failed");
    assert_eq!(d["esight_errors"], json!([]));
    w.s.call("GET", &format!("{MESSAGES}/123456789"), None).assert_error(404, "NotFound");
    w.s.call("GET", &format!("{MESSAGES}/not-a-number"), None).assert_error(404, "NotFound");
}

#[test]
fn retry_requeues_failed_messages_only() {
    let sim = spawn_simulator();
    sim.set_faults(Faults { sequence: vec![400], ..Faults::default() });
    let s = app_for(&sim, |_| {});
    let id = s.accept(&message(&unique_id("retry")));
    s.wait_status(&id, "failed", WAIT);

    let r = s.call("POST", &format!("{MESSAGES}/{id}/retry"), None);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["status"], "pending");
    let d = s.wait_status(&id, "delivered", WAIT);
    assert_eq!(sim.received_for(&id).len(), 2);
    assert_eq!(d["error_code"], Value::Null);

    s.call("POST", &format!("{MESSAGES}/{id}/retry"), None).assert_error(409, "Conflict");
    s.call("POST", &format!("{MESSAGES}/987654321/retry"), None).assert_error(404, "NotFound");
    let audit = s.get_json("/api/v1/management/audit?type=message_retried");
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
}

#[test]
fn bulk_retry_requeues_every_matching_failed_message() {
    let sim = spawn_simulator();
    let mut f = Faults::default();
    f.error_rates.insert(400, 1.0);
    sim.set_faults(f);
    let s = app_for(&sim, |_| {});
    let a = s.accept(&message(&unique_id("bulk")));
    let b = s.accept(&message_for(&unique_id("bulk"), "hu", "electricity", "1001", "HU_1001_Elec_1"));
    s.wait_status(&a, "failed", WAIT);
    s.wait_status(&b, "failed", WAIT);
    sim.faults().clear();

    let path = "/api/v1/management/messages/retry";
    s.call("POST", path, Some(&json!({"status": "delivered"}))).assert_error(400, "BadRequest");
    let r = s.call("POST", path, Some(&json!({"status": "failed", "local_market": "hu"})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["retried"], 1);
    s.wait_status(&b, "delivered", WAIT);
    assert_eq!(s.detail(&a)["status"], "failed", "outside the filter");
    let r = s.call("POST", path, Some(&json!({})));
    assert_eq!(r.json()["retried"], 1);
    s.wait_status(&a, "delivered", WAIT);
}

#[test]
fn stats_count_by_status_and_report_the_worker() {
    let w = world();
    let st = w.s.get_json("/api/v1/service/send/stats");
    assert_eq!(st["by_status"]["delivered"], 2, "{st}");
    assert_eq!(st["by_status"]["failed"], 1, "{st}");
    assert_eq!(st["delivered_last_hour"], 2, "{st}");
    assert_eq!(st["oldest_pending_age_seconds"], Value::Null, "nothing pending: {st}");
    assert_eq!(st["esight"]["reachable"], true, "{st}");
    assert_eq!(st["delivery"]["state"], "running", "{st}");
    assert_eq!(st["delivery"]["workers_alive"], st["delivery"]["workers"], "{st}");
    let failures = st["latest_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["id"], w.unknown.as_str());
    drop(w.sim);
}

#[test]
fn metrics_expose_message_counts_attempts_and_esight_latency() {
    let w = world();
    let text = w.s.app.get("/metrics").text();
    let value = |series: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series}:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("energyload_messages{status=\"delivered\"}"), 2.0);
    assert_eq!(value("energyload_messages{status=\"failed\"}"), 1.0);
    assert_eq!(value("energyload_delivery_attempts_total{outcome=\"delivered\"}"), 2.0);
    assert_eq!(value("energyload_delivery_attempts_total{outcome=\"failed\"}"), 1.0);
    assert!(text.contains("# TYPE energyload_esight_request_duration_seconds histogram"), "{text}");
    let count: f64 = text
        .lines()
        .filter(|l| l.starts_with("energyload_esight_request_duration_seconds_count"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(count >= 4.0, "token, sites, meters and two posts were timed: {count}");
}
