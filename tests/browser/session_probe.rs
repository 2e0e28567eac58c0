//! Opening the sign-in page writes no audit event: its "am I signed in?"
//! probe carries no credential and is not an access attempt
//! (`tests/api/session_probe.rs` checks that real attempts still are).

use crate::common::identity::PASSWORD;
use crate::driver::browser_test;
use crate::env::Env;

#[test]
fn opening_the_sign_in_page_writes_no_audit_event() {
    browser_test(|b| async move {
        let env = Env::start();
        b.client.goto(&env.admin_url()).await.unwrap();
        b.wait_visible("#sign-in-form").await;
        b.client.refresh().await.unwrap();
        b.wait_visible("#sign-in-form").await;

        let token = env.app.login(&env.key, &env.admin.username, PASSWORD);
        let denied = env.app.audit_events(&env.key, &token, "type=access_denied");
        assert!(denied.is_empty(), "the sign-in page's probe was audited: {denied:?}");
        // The probe did answer 401 (the page shows the form because of it),
        // and a request without key is still refused and audited.
        env.app.request("GET", "/api/v1/service/send/stats", &[], None).assert_error(401, "Unauthorized");
        assert_eq!(env.app.audit_events(&env.key, &token, "type=access_denied").len(), 1);
    });
}
