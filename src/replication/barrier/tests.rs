//! The barrier against a stand-in for Litestream's control socket (a Unix
//! socket answering `POST /sync` like Litestream 0.5 does), so that the
//! number of syncs in flight can be observed; the real Litestream runs in
//! `tests/api/replication.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{Barrier, SYNCS_IN_FLIGHT};
use crate::replication::control::ControlSocket;
use crate::replication::status::StatusCell;

/// Counts requests in flight; each answer is held until another request
/// arrives or a second passes, then 30 ms more, so that overlapping
/// requests do overlap.
#[derive(Default)]
struct Socket {
    in_flight: Mutex<usize>,
    changed: Condvar,
    most_in_flight: AtomicUsize,
    syncs: AtomicU64,
}

fn serve(listener: UnixListener, socket: Arc<Socket>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let socket = socket.clone();
        std::thread::spawn(move || answer(stream, &socket));
    }
}

fn answer(stream: UnixStream, socket: &Socket) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut n = socket.in_flight.lock().unwrap();
    *n += 1;
    socket.most_in_flight.fetch_max(*n, Ordering::SeqCst);
    socket.changed.notify_all();
    let (n, _) = socket.changed.wait_timeout_while(n, Duration::from_secs(1), |n| *n < 2).unwrap();
    drop(n);
    // A sync takes a while (Litestream's take milliseconds), so that
    // commits pile up behind it.
    std::thread::sleep(Duration::from_millis(30));
    *socket.in_flight.lock().unwrap() -= 1;
    let txid = socket.syncs.fetch_add(1, Ordering::SeqCst) + 1;
    let json = format!(r#"{{"status":"synced","path":"/db","txid":{txid},"replicated_txid":{txid}}}"#);
    let mut stream = stream;
    let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{json}", json.len());
}

#[test]
fn two_syncs_are_in_flight_while_commits_keep_coming_and_every_waiter_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litestream.sock");
    let socket = Arc::new(Socket::default());
    let listener = UnixListener::bind(&path).unwrap();
    let for_server = socket.clone();
    std::thread::spawn(move || serve(listener, for_server));

    let control = ControlSocket::new(&path, std::path::Path::new("/db"));
    let (barrier, thread) = Barrier::start(control, Duration::from_secs(10), StatusCell::default()).unwrap();
    let (tx, rx) = channel();
    let waiters = 60;
    for i in 0..waiters {
        let tx = tx.clone();
        barrier.after_replicated(Box::new(move |outcome| tx.send((i, outcome)).unwrap()));
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut released: Vec<_> =
        (0..waiters).map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap()).collect();
    released.sort_by_key(|(i, _)| *i);
    assert!(released.iter().all(|(_, o)| o.is_ok()), "every waiter confirmed: {released:?}");
    assert_eq!(released.len(), waiters);
    assert_eq!(
        socket.most_in_flight.load(Ordering::SeqCst),
        SYNCS_IN_FLIGHT,
        "while commits keep coming, as many syncs as allowed are in flight, and no more"
    );
    let syncs = socket.syncs.load(Ordering::SeqCst);
    assert!(syncs < waiters as u64, "one sync covers several waiters ({syncs} syncs for {waiters})");

    barrier.stop();
    thread.join().unwrap();
    assert!(barrier.is_stopped());
}

#[test]
fn a_waiter_after_stop_is_refused_not_left_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litestream.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || serve(listener, Arc::new(Socket::default())));
    let control = ControlSocket::new(&path, std::path::Path::new("/db"));
    let (barrier, thread) = Barrier::start(control, Duration::from_secs(10), StatusCell::default()).unwrap();
    barrier.stop();
    thread.join().unwrap();
    let (tx, rx) = channel();
    barrier.after_replicated(Box::new(move |o| tx.send(o).unwrap()));
    let refused = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(refused.is_err(), "{refused:?}");
}
