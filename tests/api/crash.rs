//! Crash safety: a child `energyload serve` takes concurrent ingest and is
//! killed with SIGKILL at random moments, several times, on the same data
//! directory. After every restart each message answered `202` exists, none
//! stays `delivering`, the database passes `PRAGMA integrity_check`, and in
//! the end every message is delivered to the simulator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use energyload::simulator::{Faults, SimConfig};
use rustix::process::Signal;
use serde_json::Value;

use crate::common::esight::{spawn_simulator_with, wait_until};
use crate::common::process::{ChildServer, seed_admin_and_key, write_config};
use crate::common::session::{MESSAGES, message, unique_id};

const ROUNDS: usize = 4;
const INGEST_THREADS: usize = 3;

/// A client that returns `None` on a transport error (the server was killed).
fn try_call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Option<(u16, Value)> {
    let reply = crate::common::http::try_request(method, url, headers, body).ok()?;
    Some((reply.status, serde_json::from_slice(&reply.body).unwrap_or(Value::Null)))
}

struct Client {
    base: String,
    key: String,
    token: String,
}

impl Client {
    fn get(&self, path: &str) -> Value {
        let bearer = format!("Bearer {}", self.token);
        let h = [("X-API-Key", self.key.as_str()), ("Authorization", bearer.as_str())];
        let (status, v) = try_call("GET", &format!("{}{path}", self.base), &h, None).expect("server answers");
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Every message as id → status.
    fn all(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut query = "limit=500".to_string();
        loop {
            let page = self.get(&format!("{MESSAGES}?{query}"));
            for m in page["items"].as_array().unwrap() {
                out.insert(m["id"].as_str().unwrap().into(), m["status"].as_str().unwrap().into());
            }
            match page["next_cursor"].as_str() {
                Some(c) => query = format!("limit=500&cursor={c}"),
                None => return out,
            }
        }
    }
}

/// Posts messages until `stop`, recording every id answered `202`.
fn ingest(client: Arc<Client>, stop: Arc<AtomicBool>, acked: Arc<Mutex<BTreeSet<String>>>) {
    let bearer = format!("Bearer {}", client.token);
    let headers = [
        ("X-API-Key", client.key.as_str()),
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let url = format!("{}{MESSAGES}", client.base);
    while !stop.load(Ordering::Relaxed) {
        let body = message(&unique_id("crash")).to_string();
        match try_call("POST", &url, &headers, Some(body.as_bytes())) {
            Some((202, v)) => {
                let item = &v["accepted"][0];
                assert_eq!(item["duplicate"], false, "{v}");
                acked.lock().unwrap().insert(item["id"].as_str().unwrap().to_string());
            }
            Some((status, v)) => panic!("unexpected answer {status}: {v}"),
            None => return,
        }
    }
}

/// Opens the database of a stopped server: integrity, and the delivering ids.
fn inspect(db: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn.pragma_query_value(None, "integrity_check", |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let mut stmt = conn.prepare("SELECT id FROM messages WHERE status = 1 -- delivering").unwrap();
    stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(|id| id.unwrap().to_string()).collect()
}

#[test]
fn sigkill_during_ingest_and_delivery_loses_nothing() {
    let started = Instant::now();
    // Keep every consumption post: on a fast machine the test sends well
    // over the simulator's default of 10,000 kept records.
    let sim = spawn_simulator_with(SimConfig { max_received: 10_000_000, ..SimConfig::default() });
    // Slow eSight a little so that deliveries are in flight when the kill comes.
    sim.set_faults(Faults { latency_ms: 5, ..Faults::default() });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim.config_toml());
    let key = seed_admin_and_key(&config, "crash-test-password-1", "crash");
    let db = dir.path().join("data/energyload.db");

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut token = None;
    let mut left_delivering = 0;
    let mut delivering = BTreeSet::new();
    for round in 0..=ROUNDS {
        let mut server = ChildServer::start(&config);
        let base = server.base();
        let token = token
            .get_or_insert_with(|| {
                let body = br#"{"username": "admin", "password": "crash-test-password-1"}"#;
                let h = [
                    ("X-API-Key", key.as_str()),
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json"),
                ];
                let (status, v) = try_call("POST", &format!("{base}/login"), &h, Some(body)).unwrap();
                assert_eq!(status, 200, "{v}");
                v["access_token"].as_str().unwrap().to_string()
            })
            .clone();
        let client = Arc::new(Client { base, key: key.clone(), token });

        // Everything answered 202 before the last kill is there.
        let stored = client.all();
        let before = acked.lock().unwrap().clone();
        let missing: Vec<&String> = before.iter().filter(|id| !stored.contains_key(*id)).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged messages lost: {missing:?}",
            missing.len()
        );

        // What the kill left `delivering` moves on once the server runs.
        wait_until(Duration::from_secs(30), "messages left delivering to move on", || {
            let all = client.all();
            delivering.iter().all(|id| all.get(id).is_some_and(|s| s != "delivering"))
        });

        if round == ROUNDS {
            wait_until(Duration::from_secs(60), "every acknowledged message delivered", || {
                let all = client.all();
                before.iter().all(|id| all.get(id).map(String::as_str) == Some("delivered"))
            });
            server.signal(Signal::TERM);
            server.wait(Duration::from_secs(30));
            break;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..INGEST_THREADS)
            .map(|_| {
                let (c, s, a) = (client.clone(), stop.clone(), acked.clone());
                std::thread::spawn(move || ingest(c, s, a))
            })
            .collect();
        let sleep_ms = 300 + rand::random::<u64>() % 1200;
        std::thread::sleep(Duration::from_millis(sleep_ms));
        server.signal(Signal::KILL);
        server.wait(Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("an ingest thread failed");
        }
        drop(server);
        delivering = inspect(&db);
        left_delivering += delivering.len();
        assert!(started.elapsed() < Duration::from_secs(150), "the crash test runs too long");
    }

    let total = acked.lock().unwrap().len();
    assert!(total >= ROUNDS * 10, "too little traffic to mean anything: {total}");
    assert!(inspect(&db).is_empty(), "nothing is delivering after a clean stop");
    let received = sim.received();
    assert!(received.len() < 10_000_000, "the simulator dropped records");
    let keys: BTreeSet<&str> = received.iter().filter_map(|m| m.idempotency_key.as_deref()).collect();
    for id in acked.lock().unwrap().iter() {
        assert!(keys.contains(id.as_str()), "message {id} never reached eSight");
    }
    eprintln!(
        "crash test: {total} messages, {left_delivering} left delivering by kills, {:?}",
        started.elapsed()
    );
}
