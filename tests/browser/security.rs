//! The admin page's security headers, checked on the wire for the page and
//! every kind of asset it serves. (That the running page loads nothing from
//! elsewhere and triggers no CSP violation is checked on every page the
//! browser flows visit: `Browser::assert_page_clean`.)

use crate::common::spawn_app;

const PATHS: [&str; 5] =
    ["/admin/", "/admin/index.html", "/admin/js/app.js", "/admin/css/admin.css", "/admin/favicon.svg"];

#[test]
fn admin_page_sends_strict_security_headers() {
    let app = spawn_app();
    for path in PATHS {
        let r = app.get(path);
        assert_eq!(r.status, 200, "{path}");
        let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        assert!(directives.contains(&"default-src 'self'"), "{path}: {csp}");
        assert!(directives.contains(&"script-src 'self'"), "{path}: {csp}");
        assert!(directives.contains(&"frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert!(!csp.contains("http:") && !csp.contains("https:") && !csp.contains('*'), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        let referrer = r.header("referrer-policy").unwrap_or_else(|| panic!("{path}: no Referrer-Policy"));
        assert!(
            ["no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"]
                .contains(&referrer),
            "{path}: Referrer-Policy {referrer}"
        );
    }
    let js = app.get("/admin/js/app.js");
    assert!(
        js.header("content-type").is_some_and(|t| t.starts_with("text/javascript")),
        "module scripts need a JS type"
    );
}

#[test]
fn admin_page_has_no_inline_script_or_foreign_reference() {
    let app = spawn_app();
    let html = app.get("/admin/").text();
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap()];
        assert!(tag.contains("src=\"/admin/"), "only same-origin script files: {tag}");
    }
    let handlers: Vec<&str> = html
        .split(|c: char| c.is_whitespace())
        .filter(|w| {
            w.starts_with("on")
                && w.split_once('=').is_some_and(|(n, _)| n[2..].chars().all(|c| c.is_ascii_lowercase()))
        })
        .collect();
    assert!(handlers.is_empty(), "no inline event handlers: {handlers:?}");
    assert!(!html.contains("style=\""), "no inline styles");
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(attr), "no reference to another origin ({attr})");
    }
}
