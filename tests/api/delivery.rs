//! Delivery to the eSight simulator over loopback: the body eSight receives,
//! exactly-once-looking idempotent re-posts, retry and failure outcomes per
//! eSight status, `Retry-After`, `RetriesExhausted`, catalog refresh before
//! `NoMeterId` / `NoSiteId`, and eSight token handling.

use std::time::Duration;

use energyload::clock::parse_rfc3339_millis;
use energyload::config::Duration as CfgDuration;
use energyload::simulator::{Catalog, Faults, SimConfig};
use serde_json::Value;

use crate::common::esight::{app_for, spawn_simulator, spawn_simulator_with, wait_until};
use crate::common::session::{fixture, message, message_for, unique_id};

const WAIT: Duration = Duration::from_secs(30);

fn outcomes(detail: &Value) -> Vec<(String, Option<u64>)> {
    detail["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["outcome"].as_str().unwrap().to_string(), a["http_status"].as_u64()))
        .collect()
}

fn sequence(statuses: &[u16]) -> Faults {
    Faults { sequence: statuses.to_vec(), ..Faults::default() }
}

#[test]
fn an_accepted_message_reaches_esight_with_only_its_message_id_rewritten() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let mid = unique_id("deliver");
    // Unknown fields, odd spacing, key order and number spellings must survive.
    let raw = format!(
        "{{ \"zeta\": {{\"keep\": [1, 2.50, -0, \"x\", null]}},\n  \"messageType\" : \"consumption\",\n  \
         \"header\": {{\"gatewayUrn\": \"urn:esight:gateways:edm:lu:VPC:LU_VPC_Elec_1\", \"messageId\": \"{mid}\", \
         \"gatewayTypeUrn\": \"urn:esight:assets:edm:lu:electricity\", \"extra\": {{}}}},\n  \
         \"gatewayData\": {{\"datapointValues\": [{{\"datapointKey\": \"activeEnergyImport\", \"value\": 10.0, \
         \"tsIso8601\": \"2021-01-31T00:15:00Z\", \"quality\": \"good\"}}], \"more\": true}},\n  \"alpha\": 1E+2 }}"
    );
    let id = s.accept_bytes(raw.as_bytes());
    let d = s.wait_status(&id, "delivered", WAIT);

    let got = sim.received_for(&id);
    assert_eq!(got.len(), 1, "one post with Idempotency-Key = id");
    let expected =
        raw.replace(&format!("\"messageId\": \"{mid}\""), &format!("\"messageId\": \"{mid}_{id}\""));
    assert_eq!(String::from_utf8_lossy(&got[0].body), expected, "byte-identical apart from messageId");
    assert_eq!(got[0].message_id.as_deref(), Some(format!("{mid}_{id}").as_str()));

    assert_eq!(
        d["message"],
        serde_json::from_str::<Value>(&raw).unwrap(),
        "detail shows the message as received"
    );
    assert_eq!(d["attempts"], 1);
    assert_eq!(outcomes(&d), vec![("delivered".into(), Some(202))]);
    assert!(d["delivered_at"].as_str().and_then(parse_rfc3339_millis).is_some(), "{d}");
    assert_eq!(d["error_code"], Value::Null);

    // A fixture file, too, arrives byte for byte.
    let text = fixture("valid-2.json");
    let id = s.accept_bytes(text.as_bytes());
    s.wait_status(&id, "delivered", WAIT);
    let got = sim.received_for(&id);
    let fixture_mid = "electricity_hu_20210131T0000";
    let expected = text.replace(&format!("\"{fixture_mid}\""), &format!("\"{fixture_mid}_{id}\""));
    assert_eq!(String::from_utf8_lossy(&got[0].body), expected);
}

#[test]
fn a_re_posted_message_is_delivered_once() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let body = message(&unique_id("once"));
    let id = s.accept(&body);
    s.wait_status(&id, "delivered", WAIT);
    let r = s.post(&body);
    assert_eq!(r.status, 202);
    let again = &r.json()["accepted"][0];
    assert_eq!((again["id"].as_str(), again["duplicate"].as_bool()), (Some(id.as_str()), Some(true)));
    assert_eq!(again["status"], "delivered", "a duplicate reports the current status");
    // A later message is delivered after anything the re-post could have queued.
    let later = s.accept(&message(&unique_id("once-later")));
    s.wait_status(&later, "delivered", WAIT);
    assert_eq!(sim.received_for(&id).len(), 1, "eSight saw the message once");
    assert_eq!(sim.stats().consumption.accepted, 2);
}

#[test]
fn two_503s_then_200_deliver_on_the_third_attempt_with_one_idempotency_key() {
    let sim = spawn_simulator();
    sim.set_faults(sequence(&[503, 503, 200]));
    let s = app_for(&sim, |_| {});
    let id = s.accept(&message(&unique_id("flaky")));
    let d = s.wait_status(&id, "delivered", WAIT);
    assert_eq!(d["attempts"], 3);
    assert_eq!(
        outcomes(&d),
        vec![("retry".into(), Some(503)), ("retry".into(), Some(503)), ("delivered".into(), Some(200))]
    );
    let got = sim.received_for(&id);
    assert_eq!(got.iter().map(|m| m.status).collect::<Vec<_>>(), vec![503, 503, 200]);
    assert!(got.windows(2).all(|w| w[0].body == w[1].body), "every attempt sends the same body");
    for a in d["attempt_log"].as_array().unwrap() {
        assert!(
            a["at"].as_str().and_then(parse_rfc3339_millis).is_some() && a["duration_ms"].is_u64(),
            "{a}"
        );
    }
}

#[test]
fn a_429_with_retry_after_is_honoured() {
    let sim = spawn_simulator();
    sim.set_faults(Faults { sequence: vec![429, 202], retry_after_secs: Some(2), ..Faults::default() });
    let s = app_for(&sim, |_| {});
    let id = s.accept(&message(&unique_id("slowdown")));
    let d = s.wait_status(&id, "delivered", WAIT);
    assert_eq!(outcomes(&d), vec![("retry".into(), Some(429)), ("delivered".into(), Some(202))]);
    let got = sim.received_for(&id);
    let at = |m: &energyload::simulator::ReceivedMessage| parse_rfc3339_millis(&m.received_at).unwrap();
    let gap = at(&got[1]) - at(&got[0]);
    assert!(gap >= 2000, "retried {gap} ms after a Retry-After of 2 s (backoff_max is 500 ms)");
}

#[test]
fn a_408_is_retried() {
    let sim = spawn_simulator();
    sim.set_faults(sequence(&[408, 202]));
    let s = app_for(&sim, |_| {});
    let id = s.accept(&message(&unique_id("timeout")));
    let d = s.wait_status(&id, "delivered", WAIT);
    assert_eq!(outcomes(&d), vec![("retry".into(), Some(408)), ("delivered".into(), Some(202))]);
}

#[test]
fn other_4xx_fail_at_once_with_the_status_name() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    for (status, code) in
        [(400, "BadRequest"), (404, "NotFound"), (422, "UnprocessableEntity"), (418, "UntrackedError")]
    {
        sim.set_faults(sequence(&[status]));
        let id = s.accept(&message(&unique_id("refused")));
        let d = s.wait_status(&id, "failed", WAIT);
        assert_eq!(d["error_code"], code, "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(outcomes(&d), vec![("failed".into(), Some(u64::from(status)))]);
        assert_eq!(sim.received_for(&id).len(), 1, "exactly one post for {status}");
    }
}

#[test]
fn a_401_on_consumption_is_resent_at_once_without_counting_an_attempt() {
    let sim = spawn_simulator();
    sim.set_faults(sequence(&[401, 202]));
    let s = app_for(&sim, |_| {});
    let id = s.accept(&message(&unique_id("reauth")));
    let d = s.wait_status(&id, "delivered", WAIT);
    assert_eq!(d["attempts"], 1, "{d}");
    assert_eq!(outcomes(&d), vec![("delivered".into(), Some(202))]);
    assert_eq!(sim.received_for(&id).iter().map(|m| m.status).collect::<Vec<_>>(), vec![401, 202]);
}

#[test]
fn retries_end_with_retries_exhausted_after_max_attempts() {
    let sim = spawn_simulator();
    let mut f = Faults::default();
    f.error_rates.insert(503, 1.0);
    sim.set_faults(f);
    let s = app_for(&sim, |c| c.delivery.max_attempts = 3);
    let id = s.accept(&message(&unique_id("exhaust")));
    let d = s.wait_status(&id, "failed", WAIT);
    assert_eq!(d["error_code"], "RetriesExhausted", "{d}");
    assert_eq!(d["attempts"], 3);
    assert_eq!(
        outcomes(&d).iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        vec!["retry", "retry", "failed"]
    );
    assert_eq!(sim.received_for(&id).len(), 3);
}

#[test]
fn retries_end_with_retries_exhausted_after_max_age() {
    let sim = spawn_simulator();
    let mut f = Faults::default();
    f.error_rates.insert(500, 1.0);
    sim.set_faults(f);
    let s = app_for(&sim, |c| c.delivery.max_age = CfgDuration::from_secs(1));
    let id = s.accept(&message(&unique_id("too-old")));
    let d = s.wait_status(&id, "failed", WAIT);
    assert_eq!(d["error_code"], "RetriesExhausted", "{d}");
    let attempts = d["attempts"].as_u64().unwrap();
    assert!((1..20).contains(&attempts), "{attempts} attempts: max_age, not max_attempts (20), ended them");
}

#[test]
fn unknown_meters_and_sites_fail_only_after_a_catalog_refresh() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let warm = s.accept(&message(&unique_id("warm")));
    s.wait_status(&warm, "delivered", WAIT);
    let (meters, sites) = (sim.requests("meters"), sim.requests("sites"));
    assert!(meters >= 1 && sites >= 1);

    let id = s.accept_bytes(fixture("unknown-meter.json").as_bytes());
    let d = s.wait_status(&id, "failed", WAIT);
    assert_eq!(d["error_code"], "NoMeterId", "{d}");
    assert!(sim.requests("meters") > meters, "the meter list was fetched again before failing");
    assert_eq!(d["attempts"], 1);

    let (meters, sites) = (sim.requests("meters"), sim.requests("sites"));
    let id = s.accept_bytes(fixture("unknown-site.json").as_bytes());
    let d = s.wait_status(&id, "failed", WAIT);
    assert_eq!(d["error_code"], "NoSiteId", "{d}");
    assert!(sim.requests("sites") > sites && sim.requests("meters") > meters, "refreshed before failing");
    assert!(sim.received_for(&id).is_empty(), "nothing posted for an unknown site");
}

#[test]
fn a_meter_added_to_esight_after_caching_is_found_by_the_refresh() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let warm = s.accept(&message(&unique_id("warm")));
    s.wait_status(&warm, "delivered", WAIT);
    let mut meters = Catalog::sample().meter_codes().to_vec();
    meters.push("LU_VPC_Elec_New".into());
    sim.sim().set_catalog(Catalog::from_codes(Catalog::sample().site_codes().to_vec(), meters));
    let id = s.accept(&message_for(&unique_id("new-meter"), "lu", "electricity", "VPC", "LU_VPC_Elec_New"));
    let d = s.wait_status(&id, "delivered", WAIT);
    assert_eq!(d["attempts"], 1);
}

#[test]
fn an_expired_esight_token_is_replaced() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |c| c.esight.catalog_ttl = CfgDuration::from_millis(200));
    let first = s.accept(&message(&unique_id("token")));
    s.wait_status(&first, "delivered", WAIT);
    let issued = sim.stats().tokens.issued;
    assert!(issued >= 1);
    sim.sim().expire_tokens();
    // The catalog must be stale so that the next delivery uses the token.
    std::thread::sleep(Duration::from_millis(400));
    let second = s.accept(&message(&unique_id("token")));
    s.wait_status(&second, "delivered", WAIT);
    let stats = sim.stats();
    assert!(stats.tokens.bearer_rejected >= 1, "the expired token was tried: {stats:?}");
    assert!(stats.tokens.issued > issued, "a new token was fetched: {stats:?}");
    let d = s.detail(&second);
    assert_eq!(d["attempts"], 1, "re-authentication is not a failed attempt: {d}");
}

#[test]
fn a_token_is_renewed_before_it_expires() {
    let sim = spawn_simulator_with(SimConfig { token_ttl: Duration::from_secs(2), ..SimConfig::default() });
    let s = app_for(&sim, |c| c.esight.catalog_ttl = CfgDuration::from_millis(100));
    let first = s.accept(&message(&unique_id("renew")));
    s.wait_status(&first, "delivered", WAIT);
    wait_until(WAIT, "a second token", || {
        let id = s.accept(&message(&unique_id("renew")));
        s.wait_status(&id, "delivered", WAIT);
        sim.stats().tokens.issued >= 2
    });
    assert_eq!(sim.stats().tokens.bearer_rejected, 0, "renewed before eSight refused it");
}
