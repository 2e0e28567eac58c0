//! Request facts the transport can tell (request id, client IP, the
//! cookie scheme, the authenticated caller's shape), and the helpers that turn
//! a request body into bytes or typed JSON within the contract's limits.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::HeaderMap;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::config::{IpNetwork, canonical_ip};

/// The authenticated caller of a request (empty on open endpoints).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The user, when a token or session was presented and verified.
    pub user: Option<crate::auth::Principal>,
    /// The API key used, when any.
    pub api_key_id: Option<String>,
}

/// `X-Request-Id`, parsed once (a `&str` name is parsed on every use).
pub const X_REQUEST_ID: hyper::header::HeaderName = hyper::header::HeaderName::from_static("x-request-id");

/// The client's request id if it is 1–128 characters of `A–Z a–z 0–9 . _ -`,
/// else a new one (a UUIDv7, written straight into its string rather than
/// through `Display`).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map_or_else(
            || {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf).to_string()
            },
            str::to_string,
        )
}

/// The client address: the socket peer, unless the peer is a trusted proxy,
/// in which case the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNetwork]) -> IpAddr {
    let peer = canonical_ip(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(canonical_ip(ip)) => continue,
            Ok(ip) => return canonical_ip(ip),
            Err(_) => break,
        }
    }
    peer
}

/// Whether this request's session cookie is `Secure`: by
/// `server.secure_cookies`, from whether this listener serves TLS and, only
/// when the TCP peer is a trusted proxy, its `X-Forwarded-Proto` (the first
/// value: the scheme the client used with the first proxy).
pub fn cookies_secure(
    mode: crate::config::SecureCookies,
    listener_tls: bool,
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNetwork],
) -> bool {
    let proxy_says_https = || {
        let peer = canonical_ip(peer);
        trusted.iter().any(|n| n.contains(peer))
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|scheme| scheme.trim().eq_ignore_ascii_case("https"))
    };
    mode.secure(listener_tls, mode == crate::config::SecureCookies::Auto && proxy_says_https())
}

/// True when the request says its body is JSON.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// True when the client prefers a JSON answer (`Accept: application/json`).
pub fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.split(';').next().unwrap_or("").trim() == "application/json"))
}

/// The body length the client declared with `Content-Length`, if any.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Reads the whole body, refusing with `413` as soon as it exceeds `limit`
/// (by `Content-Length` before reading anything, or while reading a chunked
/// body).
pub async fn read_body(headers: &HeaderMap, body: Incoming, limit: u64) -> Result<Bytes, ApiError> {
    if declared_length(headers).is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(_) => Err(ApiError::bad_request("the request body could not be read")),
    }
}

/// Reads a JSON body into `T`: `415` unless `Content-Type: application/json`,
/// `413` over the limit, `400` for malformed JSON, invalid UTF-8, nesting
/// deeper than 128, or values of the wrong type.
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Incoming,
    limit: u64,
) -> Result<T, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::unsupported_media_type());
    }
    let bytes = read_body(headers, body, limit).await?;
    parse_json(&bytes)
}

/// Parses JSON into `T`. Error messages name the position or the field, never
/// the offending value (it could be a password).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(e.into_inner(), &path)
    })?;
    de.end().map_err(|e| json_error(e, "."))?;
    Ok(value)
}

fn json_error(inner: serde_json::Error, path: &str) -> ApiError {
    let message = match inner.classify() {
        serde_json::error::Category::Data => {
            let text = inner.to_string();
            if text.starts_with("missing field") || text.starts_with("unknown field") {
                text.split(" at line").next().unwrap_or(&text).to_string()
            } else {
                format!("invalid value at `{path}`")
            }
        }
        _ => format!("malformed JSON: {inner}"),
    };
    ApiError::bad_request(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn request_ids_are_kept_only_when_well_formed() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-1.2_3"));
        assert_eq!(request_id(&h), "abc-1.2_3");
        h.insert("x-request-id", HeaderValue::from_static("bad id"));
        assert_ne!(request_id(&h), "bad id");
        h.insert("x-request-id", HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(request_id(&h).len(), 36);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.2"));
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_ip(proxy, &h, &trusted), "1.2.3.4".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
    }

    #[test]
    fn forwarded_https_is_believed_only_from_trusted_proxies_and_only_in_auto() {
        use crate::config::SecureCookies;
        let trusted: Vec<IpNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut https = HeaderMap::new();
        https.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS, http"));
        let mut http = HeaderMap::new();
        http.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "8.8.8.8".parse().unwrap();
        let none = HeaderMap::new();
        assert!(cookies_secure(SecureCookies::Auto, false, proxy, &https, &trusted));
        assert!(!cookies_secure(SecureCookies::Auto, false, stranger, &https, &trusted));
        assert!(!cookies_secure(SecureCookies::Auto, false, proxy, &http, &trusted));
        assert!(!cookies_secure(SecureCookies::Auto, false, proxy, &none, &trusted));
        assert!(cookies_secure(SecureCookies::Auto, true, stranger, &none, &trusted));
        assert!(cookies_secure(SecureCookies::Always, false, stranger, &none, &trusted));
        assert!(!cookies_secure(SecureCookies::Never, true, proxy, &https, &trusted));
    }

    #[test]
    fn json_errors_do_not_echo_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Login {
            password: String,
        }
        let e = parse_json::<Login>(br#"{"password": 12345678901}"#).unwrap_err();
        assert!(!format!("{e:?}").contains("12345678901"));
        let e = parse_json::<Login>(br#"{}"#).unwrap_err();
        assert!(format!("{e:?}").contains("missing field"));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(parse_json::<serde_json::Value>(deep.as_bytes()).unwrap_err().status(), 400);
        assert_eq!(parse_json::<serde_json::Value>(b"\"\xff\"").unwrap_err().status(), 400);
    }
}
