//! The page with the keyboard alone: sign in, move between pages, open a
//! message, verify the audit chain and sign out using only Tab, Shift+Tab,
//! typing and Enter (WebDriver key actions; no click, no script focus).

use fantoccini::key::Key;
use serde_json::json;

use crate::common::identity::PASSWORD;
use crate::driver::{Browser, browser_test};
use crate::env::Env;

/// Asserts that keyboard focus is visibly marked (an outline).
async fn assert_focus_visible(b: &Browser, what: &str) {
    let outline = b.js("const s = getComputedStyle(document.activeElement); return s.outlineStyle + ' ' + s.outlineWidth;").await;
    let outline = outline.as_str().unwrap_or_default().to_string();
    assert!(
        !outline.starts_with("none") && !outline.ends_with(" 0px"),
        "{what}: no visible focus ({outline})"
    );
}

/// Asserts that the new page's heading has the focus (so screen readers
/// announce it and Tab continues from the top of the content).
async fn assert_heading_focused(b: &Browser, page: &str) {
    let focused = b.js("return document.activeElement.matches('#view h1.page-title');").await;
    assert_eq!(focused, json!(true), "{page}: the heading has the focus, not {}", b.focused().await);
}

#[test]
fn sign_in_and_navigate_with_the_keyboard_only() {
    browser_test(|b| async move {
        let env = Env::start();
        let id = env.post_message("keyboard_1");
        env.wait_status(&id, "delivered");
        b.client.goto(&env.admin_url()).await.unwrap();
        b.wait_visible("#sign-in-form").await;
        assert_eq!(b.focused().await, "#username", "the sign-in form starts in the username field");

        b.type_keys(&env.admin.username).await;
        b.press(Key::Tab, false).await;
        assert_eq!(b.focused().await, "#password");
        b.type_keys(PASSWORD).await;
        b.press(Key::Tab, false).await;
        assert_eq!(b.focused().await, "#sign-in-submit");
        assert_focus_visible(&b, "sign-in button").await;
        b.press(Key::Enter, false).await;
        b.wait_heading("Dashboard").await;
        assert_heading_focused(&b, "dashboard").await;

        // Back into the navigation, then to Messages.
        b.tab_to("nav:messages", true, 15).await;
        assert_focus_visible(&b, "navigation link").await;
        b.press(Key::Enter, false).await;
        b.wait_heading("Messages").await;
        assert_heading_focused(&b, "messages").await;
        assert_eq!(
            b.js("return document.querySelector('#app-nav a[aria-current=page]').dataset.nav;").await,
            "messages",
            "the navigation marks the current page"
        );

        // Forward through the filters to the message, and open it.
        b.tab_to(&format!("a:#/messages/{id}"), false, 40).await;
        b.press(Key::Enter, false).await;
        b.wait_visible("#message-detail[data-status=delivered]").await;
        assert_heading_focused(&b, "message detail").await;

        // Audit: verify the chain with Enter; the result takes the focus.
        b.tab_to("nav:audit", true, 20).await;
        b.press(Key::Enter, false).await;
        b.wait_heading("Audit").await;
        b.tab_to("#verify-chain", false, 10).await;
        b.press(Key::Enter, false).await;
        b.wait_visible("#verify-result[data-ok=true]").await;
        assert_eq!(b.focused().await, "#verify-result");

        // Sign out from the header.
        b.tab_to("#sign-out", true, 40).await;
        assert_focus_visible(&b, "sign-out button").await;
        b.press(Key::Enter, false).await;
        b.wait_visible("#sign-in-form").await;
        assert_eq!(b.text_of("#sign-in-message").await, "You have signed out.");
        assert_eq!(b.focused().await, "#password", "the form keeps the username and asks for the password");
        b.assert_page_clean("keyboard flow").await;
    });
}
