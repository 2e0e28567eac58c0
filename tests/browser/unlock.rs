//! Lockout recovery in the browser: a user locked out by wrong passwords is
//! shown "locked until …" on the Users page and on her own page, with an
//! Unlock button that only locked users get; the admin clicks it, the mark
//! goes away, the unlock is audited as the admin's, and she signs in.

use serde_json::json;

use crate::common::identity::PASSWORD;
use crate::driver::browser_test;
use crate::env::Env;

const LOCKED: &str = "locked.lee";

#[test]
fn an_admin_unlocks_a_locked_user_from_the_users_page_and_she_signs_in() {
    browser_test(|b| async move {
        let env = Env::start();
        let lee = env.app.seed_user(LOCKED, "backoffice");
        for _ in 0..5 {
            env.app
                .login_reply(&env.key, LOCKED, "wrong-password-123", &[])
                .assert_error(401, "InvalidCredentials");
        }
        env.app.login_reply(&env.key, LOCKED, PASSWORD, &[]).assert_error(429, "TooManyRequests");

        b.client.goto(&env.admin_url()).await.unwrap();
        b.fill("#username", &env.admin.username).await;
        b.fill("#password", PASSWORD).await;
        b.click("#sign-in-submit").await;
        b.wait_heading("Dashboard").await;

        // Her page: the mark next to the status, and Unlock.
        b.route(&format!("#/users/{}", lee.id), &format!("User {LOCKED}")).await;
        b.wait_visible("#user-status [data-testid=locked-until]").await;
        assert!(b.text_of("#user-status").await.contains("locked until 20"));
        b.wait_visible("#unlock-user").await;

        // The list: her row is marked and offers Unlock; the admin's does not.
        b.route("#/users", "Users").await;
        let row = format!("#users-table tr[data-username=\"{LOCKED}\"]");
        let mark = format!("{row} [data-testid=locked-until]");
        b.wait_visible(&mark).await;
        assert!(b.text_of(&mark).await.starts_with("locked until 20"), "{}", b.text_of(&mark).await);
        let admin_row = "#users-table tr[data-username=\"admin\"]";
        let admin_marks = b
            .js_with(
                "return document.querySelector(arguments[0]).querySelectorAll('[data-testid=locked-until], [data-action=unlock-user]').length;",
                vec![json!(admin_row)],
            )
            .await;
        assert_eq!(admin_marks, json!(0), "only the locked user is marked");
        b.page_shot("users-locked").await;

        b.click(&format!("{row} [data-action=unlock-user]")).await;
        b.wait_gone(&mark).await;
        b.wait_gone(&format!("{row} [data-action=unlock-user]")).await;
        b.wait_visible(&row).await;
        b.page_shot("users-unlocked").await;

        // Lifted for the server too: she signs in, and the admin did it.
        let token = env.app.login(&env.key, LOCKED, PASSWORD);
        let me = env.app.authed("GET", "/user", &env.key, &token, None);
        assert_eq!(me.json()["username"], LOCKED);
        let admin_token = env.app.login(&env.key, &env.admin.username, PASSWORD);
        let unlocked = env.app.audit_events(&env.key, &admin_token, "type=account_unlocked");
        assert_eq!(unlocked.len(), 1, "{unlocked:?}");
        assert_eq!(unlocked[0]["user_id"], env.admin.id.as_str());
        assert_eq!(unlocked[0]["detail"]["target_user_id"], lee.id.as_str());
    });
}
