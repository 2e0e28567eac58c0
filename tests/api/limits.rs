//! Protocol limits: body size, header size, header-read timeout (slow
//! clients), the connection cap and the per-request timeout.

use std::time::Duration;

use crate::common::http::{raw_connect, raw_read_all, raw_read_until, raw_send};
use crate::common::spawn_app_with;
use energyload::config::Duration as CfgDuration;

#[test]
fn a_declared_oversized_body_gets_413_without_being_read() {
    let app = spawn_app_with(|c| c.server.max_body_bytes = 1024);
    let mut s = raw_connect(app.addr, Duration::from_secs(10));
    // Announce 1 MiB but send none of it: the answer must not wait for it.
    raw_send(&mut s, b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
    let (bytes, closed) = raw_read_all(&mut s);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"RequestEntityTooLarge\""), "{text}");
    assert!(closed, "the connection is closed instead of reading the body");
}

#[test]
fn a_slow_client_is_disconnected_after_the_header_read_timeout() {
    let app = spawn_app_with(|c| c.server.header_read_timeout = CfgDuration::from_millis(500));
    let mut s = raw_connect(app.addr, Duration::from_secs(15));
    raw_send(&mut s, b"GET /health HTTP/1.1\r\nHost: t\r\n");
    let (bytes, closed) = raw_read_all(&mut s);
    assert!(closed, "connection still open after the header read timeout");
    assert!(!String::from_utf8_lossy(&bytes).contains(":-)"));
}

#[test]
fn oversized_request_heads_are_refused() {
    let app = spawn_app_with(|c| c.server.max_header_bytes = 8192);
    let mut s = raw_connect(app.addr, Duration::from_secs(10));
    let big = "a".repeat(32 * 1024);
    raw_send(&mut s, format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let (bytes, closed) = raw_read_all(&mut s);
    let text = String::from_utf8_lossy(&bytes);
    assert!(closed);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = spawn_app_with(|c| c.server.max_connections = 1);
    let request = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut first = raw_connect(app.addr, Duration::from_secs(10));
    raw_send(&mut first, request);
    assert!(raw_read_until(&mut first, ":-)").ends_with(":-)"));

    // The first connection stays open (keep-alive) and holds the only slot.
    let mut second = raw_connect(app.addr, Duration::from_millis(500));
    raw_send(&mut second, request);
    assert_eq!(raw_read_until(&mut second, ":-)"), "", "served beyond the connection cap");

    drop(first);
    second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(raw_read_until(&mut second, ":-)").ends_with(":-)"), "not served after a slot freed");
}

#[test]
fn a_request_over_the_request_timeout_gets_503() {
    let app = spawn_app_with(|c| {
        c.server.request_timeout = CfgDuration::from_millis(500);
        c.storage.busy_timeout = CfgDuration::from_secs(30);
    });
    let db = rusqlite::Connection::open(app.data_dir().join("energyload.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = app.get("/readyz");
    db.execute_batch("ROLLBACK").unwrap();
    r.assert_error(503, "ServiceUnavailable");
    assert!(r.header("retry-after").is_some());
}
