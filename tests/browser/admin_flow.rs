//! The admin's day in the browser, end to end against the real appliance and
//! the eSight simulator: sign in, create a user and an API key, watch a
//! message get delivered, make one fail and retry it from the page, read the
//! audit trail and verify its chain, sign out and be refused. Every page is
//! checked (CSP, same-origin resources, labels, no error alert) and saved as
//! a screenshot.

use energyload::simulator::Faults;
use serde_json::{Value, json};

use crate::common::identity::PASSWORD;
use crate::driver::{Browser, browser_test};
use crate::env::Env;

const NEW_USER: &str = "operator.jane";
const NEW_USER_PASSWORD: &str = "a-long-enough-passphrase";

fn is_true(v: &Value) -> bool {
    v == &Value::Bool(true)
}

#[test]
fn admin_manages_the_appliance_in_the_browser() {
    browser_test(|b| async move {
        let env = Env::start();
        sign_in(&b, &env).await;
        let new_user_id = create_user(&b, &env).await;
        create_api_key(&b, &env).await;
        let (delivered_id, failed_id) = deliver_fail_and_retry(&b, &env).await;
        other_pages(&b, &env, &delivered_id).await;
        audit(&b, &new_user_id, &failed_id).await;
        dashboard(&b).await;
        sign_out(&b, &env).await;
    });
}

async fn sign_in(b: &Browser, env: &Env) {
    b.client.goto(&env.admin_url()).await.unwrap();
    b.wait_visible("#sign-in-form").await;
    assert_eq!(b.focused().await, "#username", "the sign-in form focuses the username");
    b.assert_page_clean("sign-in").await;

    // A wrong password: the contract's message, and still on the form.
    b.fill("#username", &env.admin.username).await;
    b.fill("#password", "not-the-password").await;
    b.click("#sign-in-submit").await;
    b.wait_visible("#sign-in-error").await;
    assert_eq!(b.text_of("#sign-in-error").await, "invalid username or password");
    assert!(is_true(&b.js("return document.getElementById('app-shell').hidden;").await));

    b.fill("#password", PASSWORD).await;
    b.click("#sign-in-submit").await;
    b.wait_heading("Dashboard").await;
    assert_eq!(b.text_of("#current-user").await, "admin (admin)");
    b.save_screenshot("sign-in-done").await;
    // The session is a cookie the page's scripts cannot read.
    assert_eq!(b.js("return document.cookie;").await, json!(""), "the session cookie is HttpOnly");
    let cookie = b.client.get_named_cookie("el_session").await.expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_eq!(
        b.js("return [localStorage.length, sessionStorage.length];").await,
        json!([0, 0]),
        "no token in web storage"
    );
}

async fn create_user(b: &Browser, env: &Env) -> String {
    b.click("#app-nav a[data-nav=users]").await;
    b.wait_heading("Users").await;
    b.click("#new-user").await;
    b.wait_visible("#create-user-form").await;
    assert!(is_true(&b.js("return document.getElementById('new-role-user').checked;").await));
    b.fill("#new-username", NEW_USER).await;
    b.fill("#new-password", NEW_USER_PASSWORD).await;
    b.click("#new-role-backoffice").await;
    b.click("#create-user-submit").await;

    let row = format!("#users-table tr[data-username=\"{NEW_USER}\"]");
    b.wait_visible(&row).await;
    let roles = b.text_of(&format!("{row} td[data-label=Roles]")).await;
    assert!(
        roles.contains("backoffice") && roles.contains("user") && !roles.contains("admin"),
        "roles {roles:?}"
    );
    let id = b.js(&format!("return document.querySelector({}).dataset.id;", json!(row))).await;
    let id = id.as_str().expect("user id").to_string();
    b.page_shot("users").await;

    // The account exists with exactly those roles and can log in.
    let token = env.app.login(&env.key, NEW_USER, NEW_USER_PASSWORD);
    let me = env.app.authed("GET", "/user", &env.key, &token, None);
    assert_eq!(me.status, 200, "{}", me.text());
    let mut got: Vec<String> =
        me.json()["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    got.sort();
    assert_eq!(got, ["backoffice", "user"]);
    assert_eq!(me.json()["id"], id);

    b.click(&format!("{row} a")).await;
    b.wait_heading(&format!("User {NEW_USER}")).await;
    b.wait_visible("#user-detail").await;
    assert_eq!(b.js("return document.getElementById('user-detail').dataset.id;").await, json!(id));
    assert!(is_true(&b.js("return document.getElementById('edit-role-backoffice').checked;").await));
    b.page_shot("user-detail").await;
    id
}

async fn create_api_key(b: &Browser, env: &Env) {
    b.click("#app-nav a[data-nav=apikeys]").await;
    b.wait_heading("API keys").await;
    b.fill("#new-key-name", "gateway-lu").await;
    b.click("#create-key-submit").await;
    b.wait_visible("#new-api-key").await;
    let key = b.js("return document.getElementById('new-api-key').value;").await;
    let key = key.as_str().unwrap().to_string();
    assert!(key.len() >= 20 && key != env.key, "a new key: {key:?}");
    b.wait_visible("#apikeys-table tr[data-name=gateway-lu]").await;
    b.page_shot("apikeys").await;

    // The key works: it opens /login and /user; a made-up one does not.
    let token = env.app.login(&key, "feeder", PASSWORD);
    let me = env.app.authed("GET", "/user", &key, &token, None);
    assert_eq!(me.status, 200, "{}", me.text());
    let bogus = format!("{}x", &key[..key.len() - 1]);
    let denied = env.app.authed("GET", "/user", &bogus, &token, None);
    assert_eq!(denied.status, 401);

    // Shown once: after "Done" and a fresh page it is nowhere on the page.
    b.click("#new-key-done").await;
    b.wait_gone("#new-key-panel").await;
    b.route("#/dashboard", "Dashboard").await;
    b.route("#/apikeys", "API keys").await;
    b.wait_visible("#apikeys-table tr[data-name=gateway-lu]").await;
    let html = b.js("return document.documentElement.outerHTML;").await;
    assert!(!html.as_str().unwrap().contains(&key), "the key is shown only once");
}

/// Returns the ids of the message delivered at once and the one that
/// failed and was retried.
async fn deliver_fail_and_retry(b: &Browser, env: &Env) -> (String, String) {
    // Delivered: the dashboard (which refreshes itself) shows it.
    b.click("#app-nav a[data-nav=dashboard]").await;
    b.wait_heading("Dashboard").await;
    assert_eq!(b.text_of("[data-status-count=delivered] .stat__value").await, "0");
    let ok_id = env.post_message("browser_ok_1");
    b.wait_js(
        "the dashboard to count the delivered message",
        "return document.querySelector('[data-status-count=delivered] .stat__value').textContent;",
        |v| v == "1",
    )
    .await;
    assert_eq!(b.text_of("#delivered-last-hour").await, "1");
    assert_eq!(b.text_of("#esight-reachability").await, "reachable");
    assert_eq!(b.js("return document.getElementById('delivery-state').dataset.state;").await, "running");
    // The delivery card shows the concurrency and eSight's latency.
    assert!(b.text_of("#delivery-concurrency").await.contains(" in flight · limit "));
    b.wait_js(
        "eSight's latency on the dashboard",
        "return document.getElementById('esight-latency').textContent;",
        |v| v.as_str().is_some_and(|t| t.starts_with("eSight answers in ") && t.contains(" ms (base ")),
    )
    .await;
    let sent = env.sim.statuses_for(&format!("browser_ok_1_{ok_id}"));
    assert!(!sent.is_empty() && sent.iter().all(|s| (200..300).contains(s)), "eSight got it: {sent:?}");

    // …and Messages shows it delivered, with its detail.
    b.click("#app-nav a[data-nav=messages]").await;
    b.wait_heading("Messages").await;
    b.wait_visible(&format!("#messages-table tr[data-id=\"{ok_id}\"][data-status=delivered]")).await;
    b.click(&format!("#messages-table tr[data-id=\"{ok_id}\"] a")).await;
    b.wait_visible("#message-detail[data-status=delivered]").await;
    assert!(b.text_of("#message-json").await.contains("\"browser_ok_1\""));
    assert!(b.text_of("#attempt-log").await.contains("delivered"));
    assert!(
        b.js("return !document.querySelector('#retry-message');").await == json!(true),
        "no Retry for a delivered message"
    );
    b.page_shot("message-detail").await;

    // Failed: eSight answers 404 once (a wrong consumption_url: a retry
    // can succeed once it is fixed, so Retry asks first).
    env.sim.set_faults(Faults { sequence: vec![404], ..Faults::default() });
    let failed_id = env.post_message("browser_fail_1");
    let m = env.wait_status(&failed_id, "failed");
    assert_eq!(m["error_code"], "NotFound");

    b.route("#/dashboard", "Dashboard").await;
    b.route("#/messages", "Messages").await;
    b.js_with(
        "const s = document.getElementById('filter-status'); s.focus(); s.value = arguments[0];",
        vec![json!("failed")],
    )
    .await;
    b.click("#filter-form-apply").await;
    let row = format!("#messages-table tr[data-id=\"{failed_id}\"][data-status=failed]");
    b.wait_visible(&row).await;
    assert!(b.text_of(&row).await.contains("NotFound"));
    assert_eq!(
        b.js(
            "return [...document.querySelectorAll('#messages-table tbody tr')].map((r) => r.dataset.status);"
        )
        .await,
        json!(["failed"]),
        "the status filter applies"
    );
    b.wait_visible(&format!("{row} [data-action=retry]")).await;
    b.route("#/messages", "Messages").await;
    b.wait_visible(&format!("#messages-table tr[data-id=\"{failed_id}\"]")).await;
    b.page_shot("messages").await;

    b.click(&format!("#messages-table tr[data-id=\"{failed_id}\"] a")).await;
    b.wait_visible("#message-detail[data-status=failed]").await;
    let detail = b.text_of("#message-detail").await;
    assert!(detail.contains("NotFound"), "{detail}");
    assert!(b.text_of("#attempt-log").await.contains("404"));
    b.save_screenshot("message-detail-failed").await;

    // Retry from the page, confirming past the warning; eSight accepts it now.
    b.click("#retry-message").await;
    let warning = b.text_of("[data-testid=confirm-panel]").await;
    assert!(warning.contains("fail again unless") && warning.contains("consumption_url"), "{warning}");
    b.click("#confirm-yes").await;
    b.wait_gone("#message-detail[data-status=failed]").await;
    b.wait_gone("#retry-message").await;
    env.wait_status(&failed_id, "delivered");
    b.client.refresh().await.unwrap();
    b.wait_visible("#message-detail[data-status=delivered]").await;
    let log = b.text_of("#attempt-log").await;
    assert!(log.contains("404") && log.contains("delivered"), "attempt log: {log}");
    let sent = env.sim.statuses_for(&format!("browser_fail_1_{failed_id}"));
    assert_eq!(sent.first(), Some(&404), "eSight saw the failed attempt first: {sent:?}");
    assert!(sent.last().is_some_and(|s| (200..300).contains(s)), "then a delivery: {sent:?}");
    (ok_id, failed_id)
}

/// eSight errors, quarantine and system pages, populated.
async fn other_pages(b: &Browser, env: &Env, delivered_id: &str) {
    let report = env.post_error_report("esight-report-1", &format!("browser_ok_1_{delivered_id}"));
    assert_eq!(report["correlated"], true, "{report}");
    env.post_malformed_report();

    b.route("#/errors", "eSight errors").await;
    b.wait_visible("#errors-table tbody tr").await;
    assert!(b.text_of("#errors-table").await.contains("esight-report-1"));
    b.page_shot("errors").await;
    b.click("#errors-table tbody tr a").await;
    b.wait_visible("#error-detail").await;
    assert!(b.text_of("#error-items").await.contains("E102"));
    b.page_shot("error-detail").await;

    b.route(&format!("#/messages/{delivered_id}"), "Message").await;
    b.wait_visible("#message-detail[data-status=rejected]").await;
    assert!(b.text_of("#message-esight-errors").await.contains("value out of range"));
    b.wait_visible("#retry-message").await;

    b.route("#/quarantine", "Quarantine").await;
    b.wait_visible("#quarantine-list .quarantine-item").await;
    b.page_shot("quarantine").await;

    b.route("#/system", "System").await;
    b.wait_visible("#readiness[data-status=ok]").await;
    b.wait_visible("#config").await;
    let config = b.text_of("#config").await;
    let secret = env.sim.sim().config().password.expose().to_string();
    assert!(!config.contains(&secret), "the effective config shows no secret");
    assert!(config.contains("/token"), "the effective config names eSight's token URL");
    assert!(b.text_of("#version-info").await.contains(env!("CARGO_PKG_VERSION")));
    b.page_shot("system").await;
}

async fn audit(b: &Browser, new_user_id: &str, failed_id: &str) {
    b.route("#/audit", "Audit").await;
    b.wait_visible("#audit-table").await;
    let types = b
        .js("return [...document.querySelectorAll('#audit-table tbody tr')].map((r) => r.dataset.type);")
        .await;
    let types: Vec<&str> = types.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for t in ["login_failure", "login_success", "user_created", "apikey_created", "message_retried"] {
        assert!(types.contains(&t), "audit event {t} listed; got {types:?}");
    }
    let created = b.text_of("#audit-table tr[data-type=user_created] td[data-label=Detail]").await;
    assert!(created.contains(new_user_id), "user_created names the new user: {created}");
    let retried = b.text_of("#audit-table tr[data-type=message_retried] td[data-label=Detail]").await;
    assert!(retried.contains(failed_id), "message_retried names the message: {retried}");
    let actor = b.text_of("#audit-table tr[data-type=message_retried] td[data-label=User]").await;
    assert_eq!(actor, "admin", "the retry is the admin's");

    // At 1280 px every column, the detail included, fits without scrolling sideways.
    let clipped = b
        .js("const w = document.querySelector('#audit-table').closest('.table-wrap'); return w.scrollWidth - w.clientWidth;")
        .await;
    assert!(clipped.as_i64().unwrap() <= 0, "the audit table is {clipped}px wider than its card");

    b.click("#verify-chain").await;
    b.wait_visible("#verify-result").await;
    assert_eq!(b.js("return document.getElementById('verify-result').dataset.ok;").await, "true");
    assert!(b.text_of("#verify-result").await.starts_with("Audit chain intact."));
    b.page_shot("audit").await;
}

async fn dashboard(b: &Browser) {
    b.route("#/dashboard", "Dashboard").await;
    b.wait_visible("#deliveries-chart").await;
    assert_eq!(b.text_of("[data-status-count=delivered] .stat__value").await, "1");
    assert_eq!(b.text_of("[data-status-count=rejected] .stat__value").await, "1");
    b.page_shot("dashboard").await;

    // A phone: no sideways scrolling, the menu behind a toggle.
    b.set_viewport(390, 844).await;
    b.client.refresh().await.unwrap();
    b.wait_heading("Dashboard").await;
    b.wait_visible("#deliveries-chart").await;
    let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth;").await;
    assert!(overflow.as_i64().unwrap() <= 0, "horizontal overflow of {overflow}px at 390px");
    b.wait_visible("#nav-toggle").await;
    assert_eq!(
        b.js("return getComputedStyle(document.getElementById('app-nav')).display;").await,
        "none",
        "the menu is folded on a phone"
    );
    b.page_shot("dashboard-narrow").await;
    b.click("#nav-toggle").await;
    b.wait_visible("#app-nav a[data-nav=messages]").await;
    assert_eq!(b.focused().await, "nav:dashboard", "opening the menu focuses its first link");
    b.save_screenshot("dashboard-narrow-menu").await;
    b.click("#app-nav a[data-nav=messages]").await;
    b.wait_heading("Messages").await;
    let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth;").await;
    assert!(overflow.as_i64().unwrap() <= 0, "messages: horizontal overflow of {overflow}px at 390px");
    b.save_screenshot("messages-narrow").await;
    b.set_viewport(1280, 800).await;
}

async fn sign_out(b: &Browser, env: &Env) {
    let cookie = b.client.get_named_cookie("el_session").await.expect("session cookie");
    let cookie = format!("el_session={}", cookie.value());
    let before = env.app.request("GET", "/admin/session", &[("Cookie", &cookie)], None);
    assert_eq!(before.status, 200, "the session works before signing out");

    b.click("#sign-out").await;
    b.wait_visible("#sign-in-form").await;
    assert_eq!(b.text_of("#sign-in-message").await, "You have signed out.");
    b.client.refresh().await.unwrap();
    b.wait_visible("#sign-in-form").await;
    assert!(is_true(&b.js("return document.getElementById('app-shell').hidden;").await));

    let after = env.app.request("GET", "/admin/session", &[("Cookie", &cookie)], None);
    after.assert_error(401, "Unauthorized");
    let api = env.app.request("GET", "/api/v1/service/send/stats", &[("Cookie", &cookie)], None);
    assert_eq!(api.status, 401, "the old cookie opens no API either");
}
