//! A minimal blocking HTTP client for tests (ureq with HTTP errors returned
//! as replies, not errors), plus raw-socket helpers for protocol-level tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Asserts the contract's error shape and code; returns the error object.
    pub fn assert_error(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text());
        let body = self.json();
        let error = body["error"].clone();
        assert_eq!(error["code"], code, "body: {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
        let rid = error["request_id"].as_str().expect("request_id");
        assert_eq!(Some(rid), self.header("x-request-id"), "request id in body and header");
        error
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Sends one request and reads the whole answer.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    try_request(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Sends one request and reads the whole answer; a transport error (no
/// connection, a server killed mid-answer) is an `Err` instead of a panic.
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, String> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let agent = agent();
    let result = match body {
        Some(b) => agent.run(builder.body(b.to_vec()).map_err(|e| e.to_string())?),
        None => agent.run(builder.body(()).map_err(|e| e.to_string())?),
    };
    let mut resp = result.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body =
        resp.body_mut().with_config().limit(64 * 1024 * 1024).read_to_vec().map_err(|e| e.to_string())?;
    Ok(Reply { status, headers, body })
}

/// Opens a raw TCP connection with a read timeout.
pub fn raw_connect(addr: SocketAddr, read_timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s
}

/// Writes raw bytes.
pub fn raw_send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
}

/// Reads until the peer closes or the read times out; returns what arrived
/// and whether the peer closed the connection.
pub fn raw_read_all(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (out, false);
            }
            Err(_) => return (out, true),
        }
    }
}

/// Reads until what arrived ends with `suffix`, the peer closes, or a read
/// times out; returns what arrived.
pub fn raw_read_until(s: &mut TcpStream, suffix: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(&out).ends_with(suffix) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
