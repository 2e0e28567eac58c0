//! systemd notifications from a real `energyload serve`: with
//! `NOTIFY_SOCKET` naming a unix datagram socket the test binds, the server
//! sends `READY=1` once `/readyz` passes, `RELOADING=1` (with
//! `MONOTONIC_USEC`) then `READY=1` around a SIGHUP reload, and `STOPPING=1`
//! on SIGTERM, then exits 0.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::common::http::request;
use crate::common::process::{ChildServer, bin, write_config};

/// The next datagram, waiting at most 30 s.
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification within the timeout");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Skips datagrams until one has the line `wanted`; returns it.
fn until(socket: &UnixDatagram, wanted: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no {wanted} notification");
        let message = next(socket);
        if message.lines().any(|l| l == wanted) {
            return message;
        }
    }
}

#[test]
fn serve_notifies_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let config = write_config(dir.path(), "");
    let mut server = ChildServer::start_with(
        Command::new(bin()).arg("serve").arg("--config").arg(&config).env("NOTIFY_SOCKET", &socket_path),
    );

    let ready = until(&socket, "READY=1");
    assert!(ready.contains(&format!("STATUS=serving on {}", server.addr)), "{ready}");
    let readyz = request("GET", &format!("{}/readyz", server.base()), &[], None);
    assert_eq!(readyz.status, 200, "READY=1 was sent while /readyz fails: {}", readyz.text());

    server.signal(Signal::HUP);
    let reloading = next(&socket);
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines[0], "RELOADING=1", "{reloading}");
    let usec: u64 = lines[1].strip_prefix("MONOTONIC_USEC=").expect("MONOTONIC_USEC").parse().unwrap();
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let now_usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    assert!(usec <= now_usec && now_usec - usec < 60_000_000, "MONOTONIC_USEC is CLOCK_MONOTONIC: {usec}");
    let reloaded = next(&socket);
    assert!(reloaded.starts_with("READY=1\n"), "{reloaded}");
    assert!(reloaded.contains("configuration reloaded"), "{reloaded}");
    assert_eq!(request("GET", &format!("{}/healthz", server.base()), &[], None).status, 200);

    server.signal(Signal::TERM);
    let stopping = until(&socket, "STOPPING=1");
    assert!(stopping.contains("STATUS="), "{stopping}");
    assert_eq!(server.wait(Duration::from_secs(20)), Some(0));
}
