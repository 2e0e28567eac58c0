//! Retention of finished messages: a database with a history (built with the
//! appliance's own storage functions at past times) is opened by the real
//! server, whose first housekeeping pass deletes delivered messages older than
//! `retention.delivered_days` and failed/rejected ones older than
//! `retention.failed_days`, with their attempts, and keeps everything else.

use std::time::Duration;

use energyload::clock::now_millis;
use energyload::domain::message::Message;
use energyload::ingest::to_new_message;
use energyload::storage::delivery::{self, AttemptRecord, Settlement};
use energyload::storage::ids::IdGenerator;
use energyload::storage::messages::{self, Dimensions, StoreOutcome};
use energyload::storage::reports::{self, NewReport};
use energyload::storage::{Storage, StorageError};
use rusqlite::Connection;

use crate::common::esight::wait_until;
use crate::common::session::{MESSAGES, Session, message};
use crate::common::{start, test_config};

const DAY: i64 = 24 * 60 * 60 * 1000;

/// How a history message ends, and when.
enum End {
    Pending,
    Delivered { at: i64 },
    Failed { at: i64 },
    Rejected { at: i64 },
}

/// Stores one message as accepted at `created`, then plays its end.
fn history(conn: &mut Connection, ids: &mut IdGenerator, name: &str, created: i64, end: End) -> i64 {
    let body = serde_json::to_vec(&message(name)).unwrap();
    let parsed = Message::parse(&body).unwrap();
    let tx = conn.transaction().unwrap();
    let stored = messages::store_batch(
        &tx,
        ids,
        &mut Dimensions::new(),
        created,
        &[to_new_message(parsed)],
        |a, b| a == b,
    )
    .unwrap();
    tx.commit().unwrap();
    let [StoreOutcome::Inserted(id)] = stored[..] else { panic!("{name} not inserted: {stored:?}") };
    let (settlement, at, status) = match end {
        End::Pending => return id,
        End::Delivered { at } => (Settlement::Delivered, at, Some(200)),
        End::Failed { at } => (Settlement::Failed { error_code: "BadRequest".into() }, at, Some(400)),
        End::Rejected { at } => {
            // Delivered first, then eSight's report rejects it.
            settle(conn, id, Settlement::Delivered, at - 1000, Some(200));
            let report = NewReport {
                esight_id: format!("report-{name}"),
                message_ref: format!("{name}_{id}"),
                correlated: Some(id.to_string()),
                error_count: 1,
                error_code: Some("InvalidValue".into()),
                body: b"{}".to_vec(),
                received_at: at,
            };
            reports::store_report(conn, &report).unwrap();
            return id;
        }
    };
    settle(conn, id, settlement, at, status);
    id
}

fn settle(conn: &mut Connection, id: i64, settlement: Settlement, at: i64, http_status: Option<u16>) {
    let claimed = delivery::claim_due(conn, at, at + 60_000, 1).unwrap();
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![id]);
    let record = AttemptRecord { message: id, at, settlement, http_status, error: None, duration_ms: 3 };
    delivery::record(conn, at, &[record]).unwrap();
}

fn attempts_of(conn: &Connection, id: i64) -> i64 {
    conn.query_row("SELECT count(*) FROM delivery_attempts WHERE message = ?1", [id], |r| r.get(0)).unwrap()
}

#[test]
fn the_first_housekeeping_pass_prunes_old_finished_messages_only() -> Result<(), StorageError> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.retention.delivered_days = 30;
    config.retention.failed_days = 90;
    let now = now_millis();

    let storage = Storage::open(&config.storage)?;
    storage.migrate()?;
    let mut conn = storage.open_connection()?;
    let mut ids = IdGenerator::after(0);
    let mut h = |name: &str, created_days_ago: i64, end: End| {
        history(&mut conn, &mut ids, name, now - created_days_ago * DAY, end)
    };
    // In the order the appliance would have accepted them (ids are
    // time-ordered); the pending one last so that no claim takes it.
    let rejected_100d = h("rejected-100d", 101, End::Rejected { at: now - 100 * DAY });
    let rejected_89d = h("rejected-89d", 95, End::Rejected { at: now - 89 * DAY });
    let failed_91d = h("failed-91d", 92, End::Failed { at: now - 91 * DAY });
    let failed_60d = h("failed-60d", 61, End::Failed { at: now - 60 * DAY });
    // Accepted long ago but delivered recently (after days of retries).
    let delivered_29d = h("delivered-29d-accepted-40d", 40, End::Delivered { at: now - 29 * DAY });
    let delivered_31d = h("delivered-31d", 31, End::Delivered { at: now - 31 * DAY + 5 });
    let delivered_today = h("delivered-today", 1, End::Delivered { at: now - 1000 });
    // Never pruned, whatever its age: it still has to be delivered.
    let pending = h("pending-200d", 200, End::Pending);
    let gone = [delivered_31d, failed_91d, rejected_100d];
    let kept = [delivered_29d, delivered_today, failed_60d, rejected_89d, pending];
    assert!(gone.iter().all(|&id| attempts_of(&conn, id) > 0));
    drop(conn);
    drop(storage);

    let s = Session::new(start(dir, config));
    wait_until(Duration::from_secs(10), "the retention pass", || {
        s.call("GET", &format!("{MESSAGES}/{}", gone[0]), None).status == 404
    });
    for id in gone {
        let r = s.call("GET", &format!("{MESSAGES}/{id}"), None);
        assert_eq!(r.status, 404, "message {id} should be pruned");
    }
    for id in kept {
        let r = s.call("GET", &format!("{MESSAGES}/{id}"), None);
        assert_eq!(r.status, 200, "message {id} should be kept: {}", r.text());
    }
    let listed = s.list("limit=100")["items"].as_array().unwrap().len();
    assert_eq!(listed, kept.len());

    let db = s.app.db();
    for id in gone {
        assert_eq!(attempts_of(&db, id), 0, "the attempts of {id} go with it");
    }
    let linked: i64 = db
        .query_row("SELECT count(*) FROM esight_errors WHERE esight_id = 'report-rejected-100d'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(linked, 1, "eSight's report is kept (unlinked) for the error list");
    Ok(())
}
