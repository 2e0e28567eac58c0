//! Unauthenticated floods cost nothing lasting: refusals are audited once per
//! client IP, reason and identity per window, with the repeats counted in one
//! summary event (written when the window closes, or at a clean stop), and
//! `/readyz` and `/metrics` read the database at most about once a second.

use std::time::Instant;

use serde_json::Value;

use crate::common::{TestApp, http::request, spawn_app, spawn_app_with, start};

const PROTECTED: &str = "/api/v1/service/send/stats";

/// Sends `n` requests to `path` with `headers` from `threads` threads.
fn hammer(app: &TestApp, path: &str, headers: &[(&str, &str)], n: usize, threads: usize) {
    let url = format!("{}{path}", app.base());
    std::thread::scope(|s| {
        for t in 0..threads {
            let url = &url;
            s.spawn(move || {
                for _ in (t..n).step_by(threads) {
                    let status = request("GET", url, headers, None).status;
                    assert!(matches!(status, 200 | 401), "{status}");
                }
            });
        }
    });
}

/// The `access_denied` rows in the database: (ip, detail).
fn denied_rows(db: &rusqlite::Connection) -> Vec<(Option<String>, Value)> {
    let mut stmt =
        db.prepare("SELECT ip, detail FROM audit_events WHERE type = 'access_denied' ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (ip, detail) = row.unwrap();
            (ip, serde_json::from_str(&detail).unwrap())
        })
        .collect()
}

/// How many refusals a row stands for: a summary's `count`, else one.
fn refusals(rows: &[(Option<String>, Value)]) -> u64 {
    rows.iter().map(|(_, d)| d["count"].as_u64().unwrap_or(1)).sum()
}

/// A counter's value on `/metrics` (0 when absent).
fn counter(app: &TestApp, series: &str) -> u64 {
    let text = app.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0, |v| v.parse().unwrap())
}

#[test]
fn a_flood_of_refusals_writes_one_row_and_a_clean_stop_writes_its_count() {
    let app = spawn_app();
    hammer(&app, PROTECTED, &[], 2000, 4);
    let during = denied_rows(&app.db());
    assert_eq!(during.len(), 1, "one row for the first refusal, the rest counted");
    assert_eq!(during[0].1["reason"], "missing_api_key");
    assert_eq!(counter(&app, "energyload_access_denied_total{reason=\"missing_api_key\"}"), 2000);

    let (dir, config) = app.stop();
    let app = start(dir, config);
    let after = denied_rows(&app.db());
    assert_eq!(after.len(), 2, "the first event and one summary");
    let summary = &after[1].1;
    assert_eq!(summary["count"], 1999, "{summary}");
    assert_eq!(summary["reason"], "missing_api_key");
    assert_eq!(summary["status"], 401);
    assert!(summary["first"].as_str().is_some() && summary["last"].as_str().is_some(), "{summary}");
    assert_eq!(after[1].0.as_deref(), Some("127.0.0.1"));
    assert_eq!(refusals(&after), 2000, "nothing counted is lost at a clean stop");
}

#[test]
fn varying_path_key_or_an_untrusted_forwarded_for_does_not_make_refusals_distinct() {
    let app = spawn_app();
    let url = |i: usize| format!("{}/api/v1/service/send/messages/m-{i}", app.base());
    for i in 0..100 {
        let junk_key = format!("junk-{i}");
        let spoofed = format!("198.51.100.{i}");
        let headers = [("X-API-Key", junk_key.as_str()), ("X-Forwarded-For", spoofed.as_str())];
        assert_eq!(request("GET", &url(i), &headers, None).status, 401);
        let spoofed = format!("203.0.113.{i}");
        assert_eq!(request("GET", &url(i), &[("X-Forwarded-For", spoofed.as_str())], None).status, 401);
    }
    let rows = denied_rows(&app.db());
    let reasons: Vec<&Value> = rows.iter().map(|(_, d)| &d["reason"]).collect();
    assert_eq!(reasons.len(), 2, "one row per reason, not per path, key or claimed address");
    assert_eq!(reasons, ["invalid_api_key", "missing_api_key"]);
    assert!(rows.iter().all(|(ip, _)| ip.as_deref() == Some("127.0.0.1")), "{rows:?}");
    let (dir, config) = app.stop();
    assert_eq!(refusals(&denied_rows(&start(dir, config).db())), 200);
}

#[test]
fn each_client_behind_a_trusted_proxy_gets_its_own_first_event() {
    let app = spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let clients = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "2001:db8::7", "198.51.100.20"];
    for ip in clients {
        hammer(&app, PROTECTED, &[("X-Forwarded-For", ip)], 50, 2);
    }
    let rows = denied_rows(&app.db());
    let ips: Vec<&str> = rows.iter().map(|(ip, _)| ip.as_deref().unwrap()).collect();
    assert_eq!(ips.len(), clients.len(), "one first event per client, written at once");
    assert_eq!(ips, clients);

    let (dir, config) = app.stop();
    let rows = denied_rows(&start(dir, config).db());
    assert_eq!(rows.len(), 2 * clients.len(), "{rows:?}");
    for ip in clients {
        let summary = rows.iter().find(|(i, d)| i.as_deref() == Some(ip) && d.get("count").is_some());
        assert_eq!(summary.map(|(_, d)| d["count"].clone()), Some(49.into()), "{ip}: {rows:?}");
    }
}

#[test]
fn readyz_and_metrics_hammered_read_the_database_about_once_a_second() {
    let app = spawn_app();
    let probes = "energyload_readiness_probes_total";
    let reads = "energyload_stored_state_reads_total";
    let (probes_before, started) = (counter(&app, probes), Instant::now());
    hammer(&app, "/readyz", &[], 300, 4);
    let probes_run = counter(&app, probes) - probes_before;
    let reads_before = counter(&app, reads);
    let between = Instant::now();
    hammer(&app, "/metrics", &[], 300, 4);
    let reads_run = counter(&app, reads) - reads_before;
    // A bound on the rate, not on speed: a slower machine only loosens it.
    let allowed = |since: Instant| since.elapsed().as_secs() + 2;
    assert!(probes_run >= 1, "the first /readyz probes the database");
    assert!(probes_run <= allowed(started), "{probes_run} probes for 300 /readyz");
    assert!(reads_run <= allowed(between), "{reads_run} reads for 300 /metrics");
    assert_eq!(app.get("/readyz").json()["checks"]["database"]["status"], "ok");
}
