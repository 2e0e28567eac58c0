//! `/metrics` after known traffic: messages ingested and delivered to the
//! simulator (one failing on an unknown meter), a failed login, some 404s
//! and a 405. The scrape must parse as the Prometheus text format (see
//! `exposition`), carry every family of the contract, and count exactly the
//! traffic sent: requests by route and status, durations per route agreeing
//! with the request counts, messages by status, attempts by outcome, eSight
//! calls per endpoint agreeing with what the simulator received, login
//! failures, database size.

mod exposition;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use energyload::storage::messages::MessageStatus;

use crate::common::esight::{app_for, spawn_simulator};
use crate::common::session::{MESSAGES, fixture, message, message_for, unique_id};
use exposition::Family;

const WAIT: Duration = Duration::from_secs(30);

fn family<'a>(families: &'a BTreeMap<String, Family>, name: &str, kind: &str) -> &'a Family {
    let f = families.get(name).unwrap_or_else(|| panic!("no family {name}"));
    assert_eq!(f.kind, kind, "{name}");
    assert!(!f.help.is_empty(), "{name} has help text");
    f
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_the_traffic() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let app = &s.app;

    let delivered = [
        s.accept(&message(&unique_id("m_lu"))),
        s.accept(&message_for(&unique_id("m_hu"), "hu", "electricity", "1001", "HU_1001_Elec_2")),
    ];
    let unknown = s.accept_bytes(fixture("unknown-meter.json").as_bytes());
    for id in &delivered {
        s.wait_status(id, "delivered", WAIT);
    }
    s.wait_status(&unknown, "failed", WAIT);
    app.login_reply(&s.key, "admin", "not-the-password-1", &[]).assert_error(401, "InvalidCredentials");
    for i in 0..3 {
        assert_eq!(app.get(&format!("/no/such/page/{i}")).status, 404);
    }
    assert_eq!(app.request("DELETE", "/healthz", &[], None).status, 405);

    let first = app.get("/metrics");
    assert_eq!(first.status, 200);
    let content_type = first.header("content-type").unwrap();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    exposition::parse(&first.text()).unwrap_or_else(|e| panic!("{e}\n{}", first.text()));
    // The second scrape sees the first one counted.
    let text = app.get("/metrics").text();
    let families = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    // Requests by route and status.
    let requests = family(&families, "energyload_http_requests_total", "counter");
    let count = |route: &str, status: &str| {
        requests.value("energyload_http_requests_total", &[("route", route), ("status", status)])
    };
    assert_eq!(count("(unmatched)", "404"), Some(3.0));
    assert_eq!(count("/healthz", "405"), Some(1.0));
    assert_eq!(count("/login", "401"), Some(1.0));
    assert_eq!(count("/login", "200"), Some(1.0), "the session's login");
    assert_eq!(count(MESSAGES, "202"), Some(3.0));
    assert_eq!(count("/metrics", "200"), Some(1.0));
    assert!(count("/api/v1/service/send/messages/{id}", "200").is_some_and(|n| n >= 3.0));
    for sample in &requests.samples {
        let names: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
        assert_eq!(names, BTreeSet::from(["route", "status"]), "{sample:?}");
        assert!(!sample.labels["route"].contains("/no/such"), "routes are patterns, not raw paths");
    }

    // One duration observation per answered request, per route.
    let durations = family(&families, "energyload_http_request_duration_seconds", "histogram");
    let mut per_route: BTreeMap<&str, f64> = BTreeMap::new();
    for sample in &requests.samples {
        *per_route.entry(sample.labels["route"].as_str()).or_default() += sample.value;
    }
    for (route, n) in &per_route {
        let counted = durations.value("energyload_http_request_duration_seconds_count", &[("route", route)]);
        assert_eq!(counted, Some(*n), "duration count of {route}");
    }

    // Messages by status: every status has a series.
    let messages = family(&families, "energyload_messages", "gauge");
    for status in MessageStatus::ALL {
        let expected = match status.as_str() {
            "delivered" => 2.0,
            "failed" => 1.0,
            _ => 0.0,
        };
        let value = messages.value("energyload_messages", &[("status", status.as_str())]);
        assert_eq!(value, Some(expected), "messages {}", status.as_str());
    }

    // Attempts by outcome: all three outcomes exported, retries at zero.
    let attempts = family(&families, "energyload_delivery_attempts_total", "counter");
    let outcome = |o: &str| attempts.value("energyload_delivery_attempts_total", &[("outcome", o)]);
    assert_eq!(
        (outcome("delivered"), outcome("failed"), outcome("retry")),
        (Some(2.0), Some(1.0), Some(0.0))
    );

    // eSight calls: one timing per request the simulator received.
    let esight = family(&families, "energyload_esight_request_duration_seconds", "histogram");
    for endpoint in ["token", "sites", "meters", "consumption"] {
        let timed =
            esight.value("energyload_esight_request_duration_seconds_count", &[("endpoint", endpoint)]);
        assert_eq!(timed, Some(sim.requests(endpoint) as f64), "{endpoint} calls timed");
    }
    assert_eq!(sim.requests("consumption"), 2);

    // Delivery's concurrency: the limit (adaptive, starts at 8), posts
    // outstanding (none: both delivered), eSight's latency once answered.
    let limit = family(&families, "energyload_delivery_concurrency", "gauge");
    let limit = limit.value("energyload_delivery_concurrency", &[]).unwrap();
    assert!((1.0..=1536.0).contains(&limit), "{limit}");
    let in_flight = family(&families, "energyload_delivery_in_flight", "gauge");
    assert_eq!(in_flight.value("energyload_delivery_in_flight", &[]), Some(0.0));
    let latency = family(&families, "energyload_esight_latency_seconds", "gauge");
    for kind in ["recent", "base"] {
        let v = latency.value("energyload_esight_latency_seconds", &[("kind", kind)]);
        assert!(v.is_some_and(|s| s > 0.0 && s < 5.0), "{kind}: {v:?}\n{text}");
    }

    let failures = family(&families, "energyload_login_failures_total", "counter");
    assert_eq!(failures.value("energyload_login_failures_total", &[]), Some(1.0));
    let size = family(&families, "energyload_db_size_bytes", "gauge");
    assert!(size.value("energyload_db_size_bytes", &[]).is_some_and(|b| b >= 4096.0), "{text}");
}
