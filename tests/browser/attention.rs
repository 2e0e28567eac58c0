//! The dashboard's attention strip in the states it can show (all clear,
//! delivery paused, eSight unreachable, eSight not configured), failures
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
