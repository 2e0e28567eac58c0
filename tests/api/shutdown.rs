//! Graceful shutdown of a real `energyload serve` process: SIGTERM/SIGINT
//! stop accepting, let in-flight requests finish, and exit 0.

use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;

use crate::common::http::request;
use crate::common::process::{ChildServer, bin, write_config};

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut server = ChildServer::start_with(
        Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("ENERGYLOAD_STORAGE_BUSY_TIMEOUT", "60s"),
    );
    // Hold the database so that /readyz's write waits: a request in flight.
    let db = rusqlite::Connection::open(dir.path().join("data/energyload.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let url = format!("{}/readyz", server.base());
    let in_flight = std::thread::spawn(move || request("GET", &url, &[], None));
    std::thread::sleep(Duration::from_millis(500));

    server.signal(Signal::TERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.child.try_wait().unwrap().is_none(), "exited with a request in flight");
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "still accepting new connections after SIGTERM"
    );

    db.execute_batch("ROLLBACK").unwrap();
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(server.wait(Duration::from_secs(20)), Some(0));
}

#[test]
fn sigint_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(&write_config(dir.path(), ""));
    assert_eq!(request("GET", &format!("{}/health", server.base()), &[], None).status, 200);
    server.signal(Signal::INT);
    assert_eq!(server.wait(Duration::from_secs(20)), Some(0));
}

/// The handlers are installed before start-up: a SIGTERM the moment the
/// server announces its address (or earlier) is a clean stop, not a kill.
#[test]
fn sigterm_right_after_start_still_exits_zero() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut server = ChildServer::start(&write_config(dir.path(), ""));
        server.signal(Signal::TERM);
        assert_eq!(server.wait(Duration::from_secs(20)), Some(0));
    }
}
