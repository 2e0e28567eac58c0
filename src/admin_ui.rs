//! The admin web page: files under `assets/admin/` embedded in the binary
//! with rust-embed and served under `/admin/`, each with a strict
//! Content-Security-Policy (no inline script), `X-Frame-Options: DENY`,
//! `nosniff` and a `Referrer-Policy`.

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderName, HeaderValue};
use rust_embed::Embed;

use crate::http::ApiError;
use crate::http::response::{self, Response};

#[derive(Embed)]
#[folder = "assets/admin/"]
struct AdminAssets;

/// Security headers on every admin page response.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// `GET /admin/` and `GET /admin/{*path}`.
pub fn serve(path: Option<&str>) -> Result<Response, ApiError> {
    let path = match path.unwrap_or("") {
        "" => "index.html",
        p => p,
    };
    let file = AdminAssets::get(path).ok_or_else(|| ApiError::not_found("no such page"))?;
    let mut r = response::with_body(StatusCode::OK, content_type(path), file.data.into_owned());
    let h = r.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}
