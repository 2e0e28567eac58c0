//! eSight down for a while, and delivery paused by an admin: messages wait
//! without burning their attempts, readiness stays green, the pause survives
//! a restart, and everything is delivered afterwards.

use std::time::{Duration, Instant};

use energyload::simulator::{Faults, Outage, OutageMode};
use serde_json::{Value, json};

use crate::common::esight::{Sim, app_for, spawn_simulator, wait_for, wait_until};
use crate::common::session::{Session, message, unique_id};

fn all_items(s: &Session, query: &str) -> Vec<Value> {
    s.list(&format!("{query}&limit=500"))["items"].as_array().unwrap().clone()
}

/// Delivers one message (so the token and catalogs are warm), starts an
/// outage of `mode` for `duration_ms`, then posts `count` new messages as one
/// batch, all accepted: returns when the outage started and their ids.
fn outage_then_batch(
    sim: &Sim,
    s: &Session,
    mode: OutageMode,
    duration_ms: u64,
    count: usize,
) -> (Instant, Vec<String>) {
    let warm = s.accept(&message(&unique_id("pre-outage")));
    s.wait_status(&warm, "delivered", Duration::from_secs(30));

    let outage = Outage { mode, starts_in_ms: 0, duration_ms, every_ms: None };
    sim.set_faults(Faults { outage: Some(outage), ..Faults::default() });
    let started = Instant::now();
    let batch: Vec<Value> = (0..count).map(|_| message(&unique_id("outage"))).collect();
    let r = s.post(&json!(batch));
    assert_eq!(r.status, 202, "ingest goes on while eSight is down: {}", r.text());
    let accepted = r.json()["accepted"].as_array().unwrap().clone();
    assert_eq!(accepted.len(), count);
    (started, accepted.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect())
}

fn delivery_state(s: &Session) -> Value {
    s.get_json("/api/v1/management/delivery")
}

#[test]
fn a_ten_second_outage_delays_delivery_without_burning_attempts() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let (started, _) = outage_then_batch(&sim, &s, OutageMode::Refuse, 10_000, 50);

    wait_until(Duration::from_secs(10), "the stats to show eSight unreachable", || {
        let st = s.get_json("/api/v1/service/send/stats");
        st["esight"]["reachable"] == false && st["delivery"]["state"] == "esight_unreachable"
    });
    assert_eq!(s.app.get("/readyz").status, 200, "an eSight outage does not make the appliance unready");

    wait_until(Duration::from_secs(60), "all 51 messages delivered", || {
        all_items(&s, "status=delivered").len() == 51
    });
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(9), "delivered during the outage? {elapsed:?}");
    assert!(elapsed < Duration::from_secs(40), "slow to recover after the outage: {elapsed:?}");

    let items = all_items(&s, "status=delivered");
    let attempts: u64 = items.iter().map(|m| m["attempts"].as_u64().unwrap()).sum();
    // Without a shared back-off each message would retry every ≤ 0.5 s for
    // 10 s: ~20 attempts each, ~1000 in all.
    eprintln!("outage: {attempts} attempts for 51 messages");
    assert!(attempts < 150, "{attempts} attempts for 51 messages over a 10 s outage");
    assert_eq!(sim.stats().consumption.accepted, 51);
    let st = s.get_json("/api/v1/service/send/stats");
    assert_eq!(st["esight"]["reachable"], true, "{st}");
}

/// eSight accepts connections but answers nothing for 4 s: each call ends at
/// `esight.timeout`, the workers back off together, and once eSight answers
/// again every message is delivered. A request eSight took but answered too
/// late may arrive twice; it carries the same `Idempotency-Key` both times.
#[test]
fn a_hanging_esight_times_out_and_everything_is_delivered_after() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |c| {
        c.esight.timeout = energyload::config::Duration::from_millis(500);
    });
    let (started, ids) = outage_then_batch(&sim, &s, OutageMode::Hang, 4_000, 20);

    wait_until(Duration::from_secs(10), "the stats to show eSight unreachable", || {
        s.get_json("/api/v1/service/send/stats")["esight"]["reachable"] == false
    });
    assert_eq!(s.app.get("/readyz").status, 200);
    wait_until(Duration::from_secs(60), "all 21 messages delivered", || {
        all_items(&s, "status=delivered").len() == 21
    });
    assert!(started.elapsed() >= Duration::from_millis(3_500), "delivered while eSight hung?");

    let items = all_items(&s, "status=delivered");
    let attempts: u64 = items.iter().map(|m| m["attempts"].as_u64().unwrap()).sum();
    assert!(attempts < 80, "{attempts} attempts for 21 messages over a 4 s hang");
    for id in &ids {
        let copies = sim.received_for(id);
        assert!(!copies.is_empty(), "eSight never received message {id}");
        assert!(
            copies
                .iter()
                .all(|m| m.message_id.as_deref().is_some_and(|mid| mid.ends_with(&format!("_{id}"))))
        );
    }
    let timeouts = items.iter().filter(|m| m["attempts"].as_u64().unwrap() > 1).count();
    assert!(timeouts > 0, "no message saw a timed-out attempt: the hang did not bite");
}

#[test]
fn pause_holds_deliveries_across_a_restart_and_resume_sends_them() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let r = s.call("POST", "/api/v1/management/delivery/pause", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["paused"], true);
    assert_eq!(delivery_state(&s)["paused"], true);

    let ids: Vec<String> = (0..3).map(|_| s.accept(&message(&unique_id("paused")))).collect();
    let st = s.get_json("/api/v1/service/send/stats");
    assert_eq!(st["delivery"]["state"], "paused", "{st}");
    assert_eq!(s.app.get("/readyz").status, 200, "paused is still ready");
    // Nothing to wait for: give the workers time in which they must not send.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sim.received().is_empty(), "nothing is sent while paused");

    let s = s.restart();
    assert_eq!(delivery_state(&s)["paused"], true, "the pause survives a restart");
    assert_eq!(s.app.get("/readyz").status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sim.received().is_empty(), "nothing is sent after the restart either");
    for id in &ids {
        assert_eq!(s.detail(id)["status"], "pending");
    }

    let r = s.call("POST", "/api/v1/management/delivery/resume", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["paused"], false);
    for id in &ids {
        s.wait_status(id, "delivered", Duration::from_secs(30));
    }
    assert_eq!(delivery_state(&s)["paused"], false);

    let audit = |t: &str| {
        let v = s.get_json(&format!("/api/v1/management/audit?type={t}"));
        v["items"].as_array().unwrap().len()
    };
    assert_eq!(audit("delivery_paused"), 1);
    assert_eq!(audit("delivery_resumed"), 1);
}

#[test]
fn pause_and_resume_are_for_admins_only() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let user = s.app.seed_user("backoffice1", "backoffice");
    let token = s.app.login(&s.key, &user.username, &user.password);
    let r = s.app.authed("POST", "/api/v1/management/delivery/pause", &s.key, &token, None);
    r.assert_error(403, "Forbidden");
    let id = s.accept(&message(&unique_id("not-paused")));
    let d = wait_for(Duration::from_secs(30), "delivery", || {
        let d = s.detail(&id);
        (d["status"] == "delivered").then_some(d)
    });
    assert_eq!(d["attempts"], 1);
}
