//! `GET /api/v1/management/attention` in each state it can report: a fresh
//! serve without `[esight]`, eSight down, delivery paused, messages failing
//! by cause, invalid producer traffic, the database near its cap, and all
//! clear. Each check also sends what would get around it (the state undone,
//! valid traffic, a role that may not see the dashboard).

use std::time::Duration;

use energyload::simulator::{Faults, Outage, OutageMode};
use serde_json::{Value, json};

use crate::common::esight::{app_for, spawn_simulator, wait_for};
use crate::common::session::{Session, message, message_for, unique_id};
use crate::common::spawn_app_with;

const ATTENTION: &str = "/api/v1/management/attention";
const WAIT: Duration = Duration::from_secs(30);

fn attention(s: &Session) -> Value {
    s.get_json(ATTENTION)
}

fn items_with(a: &Value, code: &str) -> Vec<Value> {
    a["items"].as_array().unwrap().iter().filter(|i| i["code"] == code).cloned().collect()
}

fn wait_item(s: &Session, code: &str) -> Value {
    wait_for(WAIT, code, || items_with(&attention(s), code).into_iter().next())
}

#[test]
fn a_fresh_serve_without_esight_says_which_keys_to_set_and_gets_critical_once_messages_wait() {
    let s = Session::new(spawn_app_with(|_| {}));
    let a = attention(&s);
    assert_eq!(a["all_clear"], false, "{a}");
    let item = &items_with(&a, "esight_not_configured")[0];
    assert_eq!(item["severity"], "warning", "nothing waits yet: {item}");
    assert_eq!(
        item["missing_keys"],
        json!([
            "token_url",
            "sites_url",
            "meters_url",
            "consumption_url",
            "username",
            "password",
            "post_username",
            "post_password"
        ])
    );
    assert!(item["fix"].as_str().unwrap().contains("ENERGYLOAD_ESIGHT_CONSUMPTION_URL"), "{item}");

    s.accept(&message(&unique_id("waiting")));
    let item = &items_with(&attention(&s), "esight_not_configured")[0];
    assert_eq!(item["severity"], "critical", "{item}");
    assert_eq!(item["count"], 1);
}

#[test]
fn only_the_dashboards_roles_see_it() {
    let s = Session::new(spawn_app_with(|_| {}));
    let office = s.app.seed_user("office", "backoffice");
    let office_token = s.app.login(&s.key, &office.username, &office.password);
    let r = s.app.authed("GET", ATTENTION, &s.key, &office_token, None);
    assert_eq!(r.status, 200, "backoffice sees the dashboard: {}", r.text());
    let reporter = s.app.seed_user("reporter", "esight");
    let reporter_token = s.app.login(&s.key, &reporter.username, &reporter.password);
    s.app.authed("GET", ATTENTION, &s.key, &reporter_token, None).assert_error(403, "Forbidden");
    s.app.request("GET", ATTENTION, &[], None).assert_error(401, "Unauthorized");
}

#[test]
fn esight_down_says_since_when_the_last_error_and_the_last_success_and_clears_when_back() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let warm = s.accept(&message(&unique_id("warm")));
    s.wait_status(&warm, "delivered", WAIT);
    assert_eq!(attention(&s)["all_clear"], true, "eSight answered: all clear");

    let outage = Outage { mode: OutageMode::Refuse, starts_in_ms: 0, duration_ms: 60_000, every_ms: None };
    sim.set_faults(Faults { outage: Some(outage), ..Faults::default() });
    let batch: Vec<Value> = (0..8).map(|_| message(&unique_id("down"))).collect();
    assert_eq!(s.post(&json!(batch)).status, 202);
    let item = wait_item(&s, "esight_unreachable");
    assert_eq!(item["severity"], "critical");
    assert!(item["since"].is_string(), "{item}");
    assert!(item["last_success"].is_string(), "the warm-up delivery was a success: {item}");
    assert!(!item["last_error"].as_str().unwrap_or("").is_empty(), "{item}");
    assert_eq!(attention(&s)["items"][0]["code"], "esight_unreachable", "most serious first");

    sim.set_faults(Faults::default());
    wait_for(WAIT, "eSight back, the item gone", || {
        items_with(&attention(&s), "esight_unreachable").is_empty().then_some(())
    });
}

#[test]
fn a_pause_says_by_whom_and_since_and_a_resume_clears_it() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    assert_eq!(s.call("POST", "/api/v1/management/delivery/pause", None).status, 200);
    let item = &items_with(&attention(&s), "delivery_paused")[0];
    assert_eq!(item["by"], "admin", "{item}");
    assert!(item["since"].is_string(), "{item}");
    let since = item["since"].clone();
    assert_eq!(s.call("POST", "/api/v1/management/delivery/pause", None).status, 200);
    assert_eq!(
        items_with(&attention(&s), "delivery_paused")[0]["since"],
        since,
        "a second pause keeps since"
    );

    assert_eq!(s.call("POST", "/api/v1/management/delivery/resume", None).status, 200);
    assert!(items_with(&attention(&s), "delivery_paused").is_empty());
}

#[test]
fn failing_messages_are_grouped_by_cause_with_count_reason_and_newest() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let mut last = String::new();
    for _ in 0..3 {
        last = s.accept(&message_for(&unique_id("unknown"), "lu", "electricity", "VPC", "LU_VPC_Elec_99"));
    }
    s.wait_status(&last, "failed", WAIT);
    let item = wait_for(WAIT, "three failed", || {
        items_with(&attention(&s), "failing_messages").into_iter().find(|i| i["count"] == 3)
    });
    assert_eq!(item["title"], "3 × meter LU_VPC_Elec_99 is not in eSight's catalog", "{item}");
    assert_eq!(item["cause"], "NoMeterId");
    assert_eq!(item["retry"], "after_fix");
    assert!(item["newest"].is_string() && item["newest_id"].is_string(), "{item}");

    // The same grouping for the dashboard and the Messages page, and the group's messages.
    let groups = s.get_json("/api/v1/service/send/failures")["items"].clone();
    assert_eq!(groups[0]["error_code"], "NoMeterId", "{groups}");
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[0]["reason"], "meter LU_VPC_Elec_99 is not in eSight's catalog");
    assert_eq!(s.get_json("/api/v1/service/send/stats")["failure_groups"], groups);
    assert_eq!(s.get_json("/api/v1/service/send/failures?status=rejected")["items"], json!([]));
    s.call("GET", "/api/v1/service/send/failures?status=pending", None).assert_error(400, "BadRequest");
    let listed = s.list("status=failed&error_code=NoMeterId")["items"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|m| m["retry"] == "after_fix" && m["retry_note"].is_string()), "{listed:?}");
    assert!(s.list("error_code=BadRequest")["items"].as_array().unwrap().is_empty(), "the filter filters");

    // A delivered message of a known meter adds no group.
    let ok = s.accept(&message(&unique_id("known")));
    s.wait_status(&ok, "delivered", WAIT);
    assert_eq!(items_with(&attention(&s), "failing_messages").len(), 1);
}

#[test]
fn invalid_traffic_is_counted_by_code_and_api_key_and_valid_traffic_is_not() {
    let s = Session::new(spawn_app_with(|_| {}));
    let mut no_id = message(&unique_id("bad"));
    no_id["header"].as_object_mut().unwrap().remove("messageId");
    let batch = json!([no_id.clone(), no_id, message(&unique_id("good"))]);
    let r = s.post(&batch);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(s.post_bytes(b"{not json").status, 400);

    let a = attention(&s);
    let items = items_with(&a, "invalid_traffic");
    assert_eq!(items.len(), 2, "{a}");
    let by_code = |code: &str| items.iter().find(|i| i["cause"] == code).unwrap().clone();
    let missing = by_code("NoMessageId");
    assert_eq!(missing["count"], 2, "the valid one is not counted: {missing}");
    assert_eq!(missing["api_key_name"], "test", "{missing}");
    assert_eq!(missing["severity"], "info");
    assert_eq!(by_code("InvalidJson")["count"], 1);
    assert!(!missing["title"].as_str().unwrap().contains("rejected"), "\"rejected\" is eSight's word");
}

#[test]
fn the_database_near_its_cap_is_reported() {
    let s = Session::new(spawn_app_with(|c| c.storage.max_db_bytes = 64 * 1024));
    let item = wait_item(&s, "database_near_cap");
    assert_eq!(item["severity"], "critical", "{item}");
    assert!(item["title"].as_str().unwrap().contains("KiB"), "sizes in words: {item}");
}

#[test]
fn all_clear_when_nothing_needs_attention() {
    let sim = spawn_simulator();
    let s = app_for(&sim, |_| {});
    let id = s.accept(&message(&unique_id("fine")));
    s.wait_status(&id, "delivered", WAIT);
    let a = attention(&s);
    assert_eq!(a, json!({"items": [], "all_clear": true}));
}
