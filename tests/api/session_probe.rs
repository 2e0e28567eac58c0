//! The sign-in page's own session probe (`GET /admin/session` with no
//! credential at all) is not an access attempt: `401`, no audit event. Every
//! way around it is still audited: a request without key to a protected
//! endpoint, and the probe itself with a wrong key or a junk session cookie.

use serde_json::Value;

use crate::common::spawn_app;

fn denied_paths(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "access_denied")
        .map(|e| {
            format!("{} {}", e["path"].as_str().unwrap_or("?"), e["detail"]["reason"].as_str().unwrap_or("?"))
        })
        .collect()
}

#[test]
fn the_bare_session_probe_writes_no_audit_event_but_real_attempts_still_do() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();

    // The probe first: were it audited, it would be the event of its window.
    app.request("GET", "/admin/session", &[], None).assert_error(401, "Unauthorized");
    let events = app.audit_events(&key, &token, "type=access_denied");
    assert!(denied_paths(&events).is_empty(), "the probe is not audited: {:?}", denied_paths(&events));

    // No key to a protected endpoint: audited as before.
    app.request("GET", "/api/v1/service/send/stats", &[], None).assert_error(401, "Unauthorized");
    // The probe with a credential that does not work: audited.
    app.request("GET", "/admin/session", &[("X-API-Key", "not-a-key")], None)
        .assert_error(401, "Unauthorized");
    app.request("GET", "/admin/session", &[("Cookie", "el_session=junk")], None)
        .assert_error(401, "Unauthorized");
    app.request("GET", "/admin/session", &[("Authorization", "Bearer junk")], None)
        .assert_error(401, "Unauthorized");

    let denied = denied_paths(&app.audit_events(&key, &token, "type=access_denied"));
    assert!(denied.contains(&"/api/v1/service/send/stats missing_api_key".to_string()), "{denied:?}");
    assert!(denied.contains(&"/admin/session invalid_api_key".to_string()), "{denied:?}");
    assert!(denied.iter().any(|d| d.starts_with("/admin/session ") && d.ends_with("token")), "{denied:?}");
}
