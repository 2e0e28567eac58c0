//! The dashboard's attention strip in the states it can show (all clear,
//! delivery paused, eSight unreachable, eSight not configured, failing
//! messages, invalid producer traffic, the database near its cap), failures
//! grouped by cause with Retry only where it can help, and sizes in words.

use energyload::simulator::{Faults, Outage, OutageMode};
use serde_json::{Value, json};

use crate::common::identity::PASSWORD;
use crate::common::spawn_app_with;
use crate::driver::{Browser, browser_test};
use crate::env::Env;

/// The strip's lines as `[code, severity]`, top to bottom.
async fn strip(b: &Browser) -> Value {
    b.js("return [...document.querySelectorAll('#attention-strip li')].map((li) => [li.dataset.code, li.dataset.severity]);")
        .await
}

async fn wait_line(b: &Browser, code: &str) -> String {
    let selector = format!("#attention-strip li[data-code={code}]");
    b.wait_visible(&selector).await;
    b.text_of(&selector).await
}

#[test]
fn the_strip_says_all_clear_then_each_thing_to_act_on_with_its_fix() {
    browser_test(|b| async move {
        let env = Env::start();
        b.sign_in(&env.admin_url(), &env.admin.username, PASSWORD).await;
        b.wait_visible("#attention-all-clear").await;
        assert_eq!(b.text_of("#attention-all-clear").await, "All clear — nothing needs your attention");
        b.page_shot("dashboard-all-clear").await;

        // Paused: by whom, with the fix.
        b.click("#pause-delivery").await;
        let line = wait_line(&b, "delivery_paused").await;
        assert!(line.contains("paused by admin since"), "{line}");
        assert!(line.contains("Fix:") && line.contains("Resume"), "{line}");
        assert!(b.js("return !document.querySelector('#attention-all-clear');").await == json!(true));
        b.click("#resume-delivery").await;
        b.wait_visible("#attention-all-clear").await;

        // eSight down: critical, first, with since / last error / last success.
        let warm = env.post_message("attention_warm");
        env.wait_status(&warm, "delivered");
        let outage =
            Outage { mode: OutageMode::Refuse, starts_in_ms: 0, duration_ms: 120_000, every_ms: None };
        env.sim.set_faults(Faults { outage: Some(outage), ..Faults::default() });
        for i in 0..6 {
            env.post_message(&format!("attention_down_{i}"));
        }
        let line = wait_line(&b, "esight_unreachable").await;
        assert!(line.contains("unreachable since") && line.contains("Last error:"), "{line}");
        assert!(line.contains("last success"), "{line}");
        assert_eq!(strip(&b).await[0], json!(["esight_unreachable", "critical"]), "most serious first");
        b.page_shot("dashboard-esight-unreachable").await;
        env.sim.set_faults(Faults::default());
    });
}

#[test]
fn without_esight_the_strip_names_the_keys_to_set() {
    browser_test(|b| async move {
        let app = spawn_app_with(|_| {});
        let admin = app.seed_user("admin", "admin");
        b.sign_in(&format!("{}/admin/", app.base()), &admin.username, &admin.password).await;
        let line = wait_line(&b, "esight_not_configured").await;
        assert!(line.contains("token_url") && line.contains("ENERGYLOAD_ESIGHT_TOKEN_URL"), "{line}");
        assert_eq!(strip(&b).await, json!([["esight_not_configured", "warning"]]));
        b.page_shot("dashboard-esight-not-configured").await;
    });
}

/// Invalid producer traffic, on an appliance without eSight: counted by
/// code and API key, with its fix, below the eSight line.
#[test]
fn invalid_producer_traffic_shows_by_code_and_key_with_its_fix() {
    browser_test(|b| async move {
        let app = spawn_app_with(|_| {});
        let admin = app.seed_user("admin", "admin");
        let producer = app.seed_user("feeder", "backoffice");
        let key = app.seed_api_key("meter-feed");
        let token = app.login(&key, &producer.username, &producer.password);
        let mut no_id = crate::env::sample_message("unused");
        no_id["header"].as_object_mut().unwrap().remove("messageId");
        let body = json!([no_id.clone(), no_id]);
        let r = app.authed("POST", "/api/v1/service/send/messages", &key, &token, Some(&body));
        assert_eq!(r.status, 422, "both refused as invalid: {}", r.text());

        b.sign_in(&format!("{}/admin/", app.base()), &admin.username, &admin.password).await;
        let line = wait_line(&b, "invalid_traffic").await;
        assert!(line.contains("NoMessageId") && line.contains("meter-feed"), "{line}");
        assert!(line.contains('2') && line.contains("Fix:"), "{line}");
        assert!(!line.contains("rejected"), "\"rejected\" is eSight's word: {line}");
        let lines = strip(&b).await;
        assert_eq!(lines[0][0], "esight_not_configured", "the warning above the info line: {lines}");
        assert!(lines.as_array().unwrap().contains(&json!(["invalid_traffic", "info"])), "{lines}");
        b.page_shot("dashboard-invalid-traffic").await;
    });
}

/// A database at its cap: a critical line, first, with sizes in words and
/// its fix.
#[test]
fn a_database_at_its_cap_is_the_first_line() {
    browser_test(|b| async move {
        let app = spawn_app_with(|c| c.storage.max_db_bytes = 64 * 1024);
        let admin = app.seed_user("admin", "admin");
        b.sign_in(&format!("{}/admin/", app.base()), &admin.username, &admin.password).await;
        let line = wait_line(&b, "database_near_cap").await;
        assert!(line.contains("KiB") && line.contains("Fix:"), "{line}");
        assert_eq!(strip(&b).await[0], json!(["database_near_cap", "critical"]), "most serious first");
        b.page_shot("dashboard-database-at-cap").await;
    });
}

/// Posts a message for an unknown meter as the data producer; returns its id.
fn post_unknown_meter(env: &Env, message_id: &str) -> String {
    let mut m = crate::env::sample_message(message_id);
    m["header"]["gatewayUrn"] = json!("urn:esight:gateways:edm:lu:VPC:LU_VPC_Elec_99");
    let r = env.app.authed("POST", "/api/v1/service/send/messages", &env.key, &env.feeder_token, Some(&m));
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["accepted"][0]["id"].as_str().unwrap().to_string()
}

#[test]
fn failures_are_grouped_by_cause_and_retry_is_offered_only_where_it_can_help() {
    browser_test(|b| async move {
        let env = Env::start();
        // One message eSight refuses (400: fails again whatever happens)…
        env.sim.set_faults(Faults { sequence: vec![400], ..Faults::default() });
        let refused = env.post_message("attention_refused");
        env.wait_status(&refused, "failed");
        // …and three for a meter eSight does not know (a retry helps once it is added).
        let unknown: Vec<String> =
            (0..3).map(|i| post_unknown_meter(&env, &format!("attention_unknown_{i}"))).collect();
        for id in &unknown {
            env.wait_status(id, "failed");
        }

        b.sign_in(&env.admin_url(), &env.admin.username, PASSWORD).await;
        let group = "#failure-groups tr[data-error-code=NoMeterId]";
        b.wait_visible(group).await;
        let text = b.text_of(group).await;
        assert!(text.contains("3 × meter LU_VPC_Elec_99 is not in eSight's catalog"), "{text}");
        assert_eq!(
            b.js("return document.querySelectorAll('#failure-groups tbody tr').length;").await,
            json!(2)
        );
        let refused_group = b.js("return document.querySelector('#failure-groups tr[data-error-code=BadRequest]').dataset.retry;").await;
        assert_eq!(refused_group, json!("fails_again"));
        let line = wait_line(&b, "failing_messages").await;
        assert!(line.contains("3 × meter LU_VPC_Elec_99"), "the strip names the biggest cause first: {line}");
        b.page_shot("dashboard-failures-by-cause").await;

        // The Messages page's view by cause links to the group's messages.
        b.route("#/messages?status=failed&view=causes", "Messages").await;
        let row = "#messages-by-cause tr[data-error-code=NoMeterId]";
        b.wait_visible(row).await;
        b.page_shot("messages-by-cause").await;
        b.click(&format!("{row} a[data-action=show-group]")).await;
        let mut want = unknown.clone();
        want.sort();
        let want = json!(want);
        b.wait_js(
            "the NoMeterId messages only",
            "return [...document.querySelectorAll('#messages-table tbody tr')].map((r) => r.dataset.id).sort();",
            |v| v == &want,
        )
        .await;
        let retries = b
            .js("return [...document.querySelectorAll('#messages-table [data-action=retry]')].map((r) => r.dataset.retry);")
            .await;
        assert_eq!(retries, json!(["after_fix", "after_fix", "after_fix"]), "Retry asks first");

        // The refused one: no Retry, and why.
        b.route(&format!("#/messages/{refused}"), "Message").await;
        b.wait_visible("#message-detail[data-status=failed]").await;
        b.wait_visible("#no-retry").await;
        assert!(b.js("return !document.querySelector('#retry-message');").await == json!(true), "no Retry");
        assert!(
            b.text_of("#no-retry").await.contains("fails again")
                || b.text_of("#no-retry").await.contains("same body")
        );
        // The list too: no Retry in its row.
        b.route("#/messages?status=failed&error_code=BadRequest", "Messages").await;
        let refused_row = format!("#messages-table tr[data-id=\"{refused}\"]");
        b.wait_visible(&refused_row).await;
        assert!(
            b.js_with(
                "return !document.querySelector(arguments[0] + ' [data-action=retry]');",
                vec![json!(refused_row)]
            )
            .await
                == json!(true)
        );
    });
}

#[test]
fn tiles_say_why_their_numbers_differ_and_sizes_read_as_sizes() {
    browser_test(|b| async move {
        let env = Env::start();
        let id = env.post_message("attention_tile");
        env.wait_status(&id, "delivered");
        env.post_error_report("attention-report-1", &format!("attention_tile_{id}"));
        env.wait_status(&id, "rejected");

        b.sign_in(&env.admin_url(), &env.admin.username, PASSWORD).await;
        assert_eq!(b.text_of("#delivered-last-hour").await, "1");
        assert_eq!(b.text_of("[data-status-count=delivered] .stat__value").await, "0");
        assert_eq!(
            b.text_of("#delivered-later-rejected").await,
            "1 of them later rejected by eSight (counted as rejected above)"
        );

        b.route("#/system", "System").await;
        b.wait_visible("#readiness [data-check=storage] [data-bytes]").await;
        let sizes = b
            .js("return [...document.querySelectorAll('#readiness [data-check=storage] [data-bytes]')].map((e) => [e.textContent, e.dataset.bytes, e.title]);")
            .await;
        let sizes = sizes.as_array().unwrap();
        assert!(sizes.len() >= 3, "free, floor and database sizes: {sizes:?}");
        for s in sizes {
            let (text, raw) = (s[0].as_str().unwrap(), s[1].as_str().unwrap());
            let unit = text.rsplit(' ').next().unwrap();
            assert!(["B", "KiB", "MiB", "GiB", "TiB", "PiB"].contains(&unit), "{text} is a size");
            assert!(text != raw, "{text}: not the raw byte count");
            assert!(s[2].as_str().unwrap().ends_with(" bytes"), "the exact count in the tooltip: {s}");
        }
        let min_free = b.text_of("#config [data-section=storage] [data-bytes]").await;
        assert_eq!(min_free, "1.0 MiB", "the test config's 1 MiB floor");
    });
}
