//! The guard through the real server: how the API key, bearer tokens, the
//! admin page's cookie session and its CSRF token combine. The regression
//! tests here reproduce issue 11's key bypass (a bearer token with any
//! cookie named `el_session` got through without a key); `guard/matrix.rs`
//! checks every route against every combination of credentials.

mod matrix;
mod mint;

use crate::common::identity::PASSWORD;
use crate::common::{Reply, TestApp, spawn_app, spawn_app_with};

/// Signs in to the admin page; returns (cookie header value, CSRF token).
fn page_session(app: &TestApp, username: &str, extra: &[(&str, &str)]) -> (String, String, Reply) {
    let body = serde_json::json!({"username": username, "password": PASSWORD}).to_string();
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(extra);
    let r = app.request("POST", "/admin/session", &headers, Some(body.as_bytes()));
    assert_eq!(r.status, 200, "sign-in: {}", r.text());
    let set_cookie = r.header("set-cookie").expect("a session cookie").to_string();
    let pair = set_cookie.split(';').next().unwrap().to_string();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();
    (pair, csrf, r)
}

#[test]
fn a_bearer_token_with_any_session_cookie_still_needs_the_api_key() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let bearer = format!("Bearer {token}");
    for cookie in ["el_session=x", "el_session=", "el_session=x; other=1", "__Host-el_session=x"] {
        let r = app.request(
            "GET",
            "/api/v1/management/users",
            &[("Authorization", bearer.as_str()), ("Cookie", cookie)],
            None,
        );
        r.assert_error(401, "Unauthorized");
    }
    // With the key, the same token works: the refusal above is for the key.
    assert_eq!(app.authed("GET", "/api/v1/management/users", &key, &token, None).status, 200);
}

#[test]
fn a_bearer_token_put_into_the_session_cookie_does_not_waive_the_key() {
    let app = spawn_app();
    let (_key, token, _) = app.admin_session();
    // Everything a page session would send, built from a token that was
    // obtained with the key: the CSRF token derives from the token's id,
    // which the token's payload shows.
    let jti = mint::claims_of(&token)["jti"].as_str().unwrap().to_string();
    let csrf = energyload::auth::guard::csrf_token(&jti);
    let cookie = format!("el_session={token}");
    let r = app.request("GET", "/api/v1/management/users", &[("Cookie", cookie.as_str())], None);
    r.assert_error(401, "Unauthorized");
    let r = app.request(
        "POST",
        "/api/v1/management/delivery/pause",
        &[("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())],
        None,
    );
    r.assert_error(401, "Unauthorized");
}

#[test]
fn a_page_session_works_without_a_key_but_its_token_is_no_bearer_token() {
    let app = spawn_app();
    let (key, _token, admin) = app.admin_session();
    let (cookie, csrf, _) = page_session(&app, &admin.username, &[]);
    assert!(cookie.starts_with("el_session="), "{cookie}");
    let r = app.request("GET", "/api/v1/management/users", &[("Cookie", cookie.as_str())], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app.request(
        "POST",
        "/api/v1/management/delivery/pause",
        &[("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The cookie's token as a bearer token, even with the key: refused.
    let page_token = cookie.strip_prefix("el_session=").unwrap();
    app.authed("GET", "/user", &key, page_token, None).assert_error(401, "Unauthorized");
}

#[test]
fn the_import_by_file_name_changes_state_and_so_needs_the_csrf_token() {
    let app = spawn_app();
    let (_key, _token, admin) = app.admin_session();
    let (cookie, csrf, _) = page_session(&app, &admin.username, &[]);
    let path = "/api/v1/service/send/sendJson/meter";
    let r = app.request("GET", path, &[("Cookie", cookie.as_str())], None);
    r.assert_error(403, "Forbidden");
    let r = app.request(
        "GET",
        path,
        &[("Cookie", cookie.as_str()), ("X-CSRF-Token", "0".repeat(64).as_str())],
        None,
    );
    r.assert_error(403, "Forbidden");
    let r = app.request("GET", path, &[("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())], None);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn every_answer_forbids_caching_and_content_sniffing() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let body = serde_json::json!({"name": "cached?"});
    let answers = [
        app.login_reply(&key, "admin", PASSWORD, &[]),
        app.authed("POST", "/api/v1/management/apikeys", &key, &token, Some(&body)),
        app.authed("GET", "/api/v1/management/backup", &key, &token, None),
        app.authed("GET", "/user", &key, &token, None),
        app.get("/no/such/path"),
        app.get("/health"),
        app.request("GET", "/user", &[], None),
    ];
    for r in &answers {
        assert_eq!(r.header("cache-control"), Some("no-store"), "{} {}", r.status, r.text());
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    // The admin page's static files keep their revalidation policy.
    assert_eq!(app.get("/admin/").header("cache-control"), Some("no-cache"));
}

#[test]
fn behind_a_trusted_https_proxy_the_cookie_is_secure_and_host_prefixed() {
    let app = spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (_key, _token, admin) = app.admin_session();
    let https = [("X-Forwarded-Proto", "https")];
    let (cookie, _csrf, reply) = page_session(&app, &admin.username, &https);
    let set_cookie = reply.header("set-cookie").unwrap();
    assert!(set_cookie.starts_with("__Host-el_session="), "{set_cookie}");
    assert!(set_cookie.contains("; Secure") && set_cookie.contains("; Path=/"), "{set_cookie}");
    assert!(!set_cookie.to_ascii_lowercase().contains("domain="), "{set_cookie}");
    let ok = app.request("GET", "/admin/session", &[("Cookie", cookie.as_str()), https[0]], None);
    assert_eq!(ok.status, 200, "{}", ok.text());
    // Over HTTPS only the prefixed cookie counts: the same token under the
    // plain name (which a plain-HTTP page or a sub-domain could have set) is
    // no session.
    let token = cookie.strip_prefix("__Host-el_session=").unwrap();
    let plain = format!("el_session={token}");
    let r = app.request("GET", "/admin/session", &[("Cookie", plain.as_str()), https[0]], None);
    r.assert_error(401, "Unauthorized");
    // And over plain HTTP the prefixed one is not read.
    let r = app.request("GET", "/admin/session", &[("Cookie", cookie.as_str())], None);
    r.assert_error(401, "Unauthorized");
}

#[test]
fn an_untrusted_peer_cannot_claim_https_and_secure_cookies_can_be_forced() {
    let app = spawn_app();
    let (_key, _token, admin) = app.admin_session();
    let (cookie, _, _) = page_session(&app, &admin.username, &[("X-Forwarded-Proto", "https")]);
    assert!(cookie.starts_with("el_session="), "{cookie}");
    drop(app);

    let app = spawn_app_with(|c| c.server.secure_cookies = energyload::config::SecureCookies::Always);
    let (_key, _token, admin) = app.admin_session();
    let (cookie, _, _) = page_session(&app, &admin.username, &[]);
    assert!(cookie.starts_with("__Host-el_session="), "{cookie}");
}
