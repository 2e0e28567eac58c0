//! The admin page as a tester first sees it: `energyload demo` (the real
//! binary, with its simulator and sample traffic) is started, the printed
//! admin password signs in, and every page is captured once the demo has
//! populated it (`<target>/screenshots/demo-<page>.png`).

use std::time::{Duration, Instant};

use crate::common::demo::DemoProcess;
use crate::driver::{Browser, browser_test};

/// Waits until the demo has delivered, failed and rejected messages to show.
fn wait_for_traffic(demo: &DemoProcess, cookie: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = crate::common::http::request(
            "GET",
            &format!("{}/api/v1/service/send/stats", demo.base),
            &[("Cookie", cookie)],
            None,
        );
        let s = r.json();
        let by = &s["by_status"];
        let enough = by["delivered"].as_u64().unwrap_or(0) >= 20
            && by["failed"].as_u64().unwrap_or(0) >= 1
            && by["rejected"].as_u64().unwrap_or(0) >= 1;
        if enough {
            return;
        }
        assert!(Instant::now() < deadline, "the demo produced too little within 90 s: {s}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

async fn first_id(b: &Browser, path: &str) -> String {
    let script = format!(
        "const r = await fetch('{path}', {{credentials: 'same-origin'}}); \
         const j = await r.json(); return j.items.length ? j.items[0].id : null;"
    );
    let v = b.js(&format!("return (async () => {{ {script} }})();")).await;
    v.as_str().unwrap_or_else(|| panic!("no item at {path}")).to_string()
}

#[test]
fn every_page_populated_by_the_demo() {
    browser_test(|b| async move {
        let dir = tempfile::tempdir().unwrap();
        let demo = DemoProcess::start(dir.path(), &dir.path().join("demo-data"));
        b.set_viewport(1280, 800).await;
        b.client.goto(&demo.admin_url).await.unwrap();
        b.wait_visible("#sign-in-form").await;
        b.fill("#username", &demo.username).await;
        b.fill("#password", &demo.password).await;
        b.click("#sign-in-submit").await;
        b.wait_heading("Dashboard").await;

        let cookie = format!(
            "el_session={}",
            b.client.get_named_cookie("el_session").await.expect("session cookie").value()
        );
        wait_for_traffic(&demo, &cookie);

        // Already on the dashboard (routing to the same hash renders nothing new).
        b.wait_heading("Dashboard").await;
        b.page_shot("demo-dashboard").await;
        for (hash, heading, name) in [
            ("#/messages", "Messages", "demo-messages"),
            ("#/errors", "eSight errors", "demo-errors"),
            ("#/quarantine", "Quarantine", "demo-quarantine"),
            ("#/users", "Users", "demo-users"),
            ("#/apikeys", "API keys", "demo-apikeys"),
            ("#/audit", "Audit", "demo-audit"),
            ("#/system", "System", "demo-system"),
        ] {
            b.route(hash, heading).await;
            b.page_shot(name).await;
        }
        let message = first_id(&b, "/api/v1/service/send/messages?status=rejected&limit=1").await;
        b.route(&format!("#/messages/{message}"), "Message").await;
        b.page_shot("demo-message-detail").await;
        let report = first_id(&b, "/api/v1/service/receive/errors?limit=1").await;
        b.route(&format!("#/errors/{report}"), "Error report").await;
        b.page_shot("demo-error-detail").await;
        let user = first_id(&b, "/api/v1/management/users?limit=1").await;
        b.route(&format!("#/users/{user}"), "User").await;
        b.page_shot("demo-user-detail").await;
        drop(demo);
    });
}
