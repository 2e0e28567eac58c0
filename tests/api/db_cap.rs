//! `storage.max_db_bytes`: once the database (file + WAL, less free pages)
//! reaches the cap, ingest answers `507 InsufficientStorage` like under the
//! disk floor, `/readyz` fails naming the cap, and nothing more is stored;
//! the other readiness checks stay green.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::esight::wait_for;
use crate::common::session::{Session, message, unique_id};
use crate::common::{spawn_app, start};

/// Messages stored, by the list's total over pages.
fn stored(session: &Session) -> usize {
    let mut count = 0;
    let mut query = "limit=500".to_string();
    loop {
        let page = session.list(&query);
        count += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=500&cursor={c}"),
            None => return count,
        }
    }
}

#[test]
fn over_max_db_bytes_ingest_answers_507_and_readiness_fails() {
    // Measure an empty database, then restart with room for a little more.
    let session = Session::new(spawn_app());
    let empty = session.app.get("/readyz").json()["checks"]["storage"]["db_bytes"].as_u64().unwrap();
    assert!(empty > 0);
    let (key, token) = (session.key.clone(), session.token.clone());
    let (dir, mut config) = session.app.stop();
    config.storage.max_db_bytes = empty + 512 * 1024;
    let session = Session { app: start(dir, config), key, token };
    let ready = session.app.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["checks"]["storage"]["max_db_bytes"], empty + 512 * 1024);

    let batch = |tag: &str| Value::Array((0..100).map(|_| message(&unique_id(tag))).collect());
    let refused = wait_for(Duration::from_secs(120), "ingest to hit the cap", || {
        let r = session.post(&batch("fill"));
        match r.status {
            202 => None,
            _ => Some(r),
        }
    });
    let error = refused.assert_error(507, "InsufficientStorage");
    assert!(error["message"].as_str().unwrap().contains("storage.max_db_bytes"), "{error}");

    let ready = session.app.get("/readyz");
    assert_eq!(ready.status, 503, "{}", ready.text());
    let checks = &ready.json()["checks"];
    assert_eq!(checks["storage"]["status"], "fail");
    assert!(checks["storage"]["reason"].as_str().unwrap().contains("storage.max_db_bytes"), "{checks}");
    assert!(checks["storage"]["db_bytes"].as_u64().unwrap() >= empty + 512 * 1024, "{checks}");
    for other in ["database", "delivery", "migrations"] {
        assert_eq!(checks[other]["status"], "ok", "{other}: {checks}");
    }

    let before = stored(&session);
    for _ in 0..3 {
        session.post(&json!(message(&unique_id("late")))).assert_error(507, "InsufficientStorage");
    }
    session.post(&batch("late")).assert_error(507, "InsufficientStorage");
    assert_eq!(stored(&session), before, "something was stored over the cap");
}
