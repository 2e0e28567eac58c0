//! Tests for chunked retention on a migrated in-memory database: a pass
//! deletes only what its cutoffs allow, never more than a chunk per step,
//! and leaves the rest in place when it is stopped between chunks.

use rusqlite::{Connection, params};

use super::*;

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_800_000_000_000;

fn db() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    super::super::migrations::apply(&mut c).unwrap();
    c
}

/// A message created at `created` (its id says so), in `status`, last
/// changed (and, if delivered, delivered) at `finished`, with one attempt.
fn add(c: &Connection, seq: i64, status: &str, created: i64, finished: i64) -> i64 {
    let id = first_id_at(created) + seq;
    let delivered_at = (status == "delivered").then_some(finished);
    let status = MessageStatus::parse(status).unwrap().code();
    crate::storage::messages::insert_test_dimensions(c);
    c.execute(
        "INSERT INTO messages (id, message_key, status, meter, site, feed, datapoints, attempts,
                               body_format, body, updated_at, delivered_at, cycle_started)
         VALUES (?1, ?2, ?3, 1, 1, 1, 4, 1, 0, x'7B7D', ?4, ?5, ?6)",
        params![id, id, status, finished, delivered_at, created],
    )
    .unwrap();
    c.execute(
        "INSERT INTO delivery_attempts (message, attempt, at, outcome, duration_ms) VALUES (?1, 1, ?2, 0, 3)",
        params![id, finished],
    )
    .unwrap();
    id
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_pass_deletes_in_chunks_of_at_most_its_size_and_only_past_the_cutoffs() {
    let c = db();
    for seq in 0..250 {
        add(&c, seq, "delivered", NOW - 40 * DAY, NOW - 40 * DAY + 1000);
    }
    for seq in 0..30 {
        add(&c, seq, "failed", NOW - 100 * DAY, NOW - 95 * DAY);
    }
    // Kept: delivered within 30 days (though accepted long ago), failed
    // within 90, and pending whatever its age.
    let kept = [
        add(&c, 1000, "delivered", NOW - 45 * DAY, NOW - 29 * DAY),
        add(&c, 1001, "failed", NOW - 91 * DAY, NOW - 60 * DAY),
        add(&c, 1002, "pending", NOW - 200 * DAY, NOW - 200 * DAY),
        add(&c, 0, "delivered", NOW - DAY, NOW - DAY),
    ];

    let mut pass = RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 100);
    let mut steps = Vec::new();
    while !pass.is_done() {
        steps.push(pass.step(&c).unwrap());
    }
    assert!(steps.iter().all(|&n| n <= 100), "no chunk deletes more than its size: {steps:?}");
    assert_eq!(steps, vec![100, 100, 50, 30, 0], "delivered in three chunks, then failed, then rejected");
    assert_eq!(pass.deleted(), 280);
    assert_eq!(pass.chunks(), 5);
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), kept.len() as i64);
    for id in kept {
        assert_eq!(count(&c, &format!("SELECT count(*) FROM messages WHERE id = {id}")), 1, "{id} kept");
    }
    assert_eq!(count(&c, "SELECT count(*) FROM delivery_attempts"), kept.len() as i64, "attempts go along");
    assert_eq!(pass.step(&c).unwrap(), 0, "a finished pass does nothing");
}

#[test]
fn a_pass_stopped_between_chunks_leaves_the_rest_for_later() {
    let c = db();
    for seq in 0..250 {
        add(&c, seq, "delivered", NOW - 40 * DAY, NOW - 40 * DAY + 1000);
    }
    {
        let mut pass = RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 100);
        assert_eq!(pass.step(&c).unwrap(), 100);
        assert_eq!(pass.step(&c).unwrap(), 100);
        assert!(!pass.is_done());
    } // stopped here
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 50, "stopped after two chunks");

    // The next pass starts with the oldest rows left.
    let mut next = RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 100);
    assert_eq!(next.run_to_end(&c).unwrap(), 50);
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 0);
}

#[test]
fn a_chunk_size_below_one_still_makes_progress() {
    let c = db();
    add(&c, 0, "rejected", NOW - 100 * DAY, NOW - 95 * DAY);
    let mut pass = RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 0);
    assert_eq!(pass.run_to_end(&c).unwrap(), 1);
}

#[test]
fn the_ingest_writer_runs_a_pass_in_chunks_and_reports_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::StorageConfig { data_dir: dir.path().join("data"), ..Default::default() };
    let storage = crate::storage::Storage::open(&cfg).unwrap();
    storage.migrate().unwrap();
    let c = storage.open_connection().unwrap();
    for seq in 0..25 {
        add(&c, seq, "delivered", NOW - 40 * DAY, NOW - 40 * DAY + 1000);
    }
    let kept = add(&c, 0, "delivered", NOW - DAY, NOW - DAY);
    let (writer, thread) =
        crate::storage::ingest::IngestWriter::start(&storage, |a, b| a == b, Default::default(), |_| {})
            .unwrap();

    let report = writer.start_retention(RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 10)).unwrap();
    let report = report.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    assert!(report.finished);
    assert_eq!(report.deleted, 25);
    assert_eq!(report.chunks, 5, "10 + 10 + 5 delivered, then one chunk each for failed and rejected");
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 1);
    assert_eq!(count(&c, &format!("SELECT count(*) FROM messages WHERE id = {kept}")), 1);
    drop(writer);
    thread.join().unwrap();
}

#[test]
fn a_chunk_out_of_time_stops_after_one_row_and_its_phase_goes_on() {
    let c = db();
    for seq in 0..3 {
        add(&c, seq, "delivered", NOW - 40 * DAY, NOW - 40 * DAY + 1000);
    }
    add(&c, 0, "failed", NOW - 100 * DAY, NOW - 95 * DAY);
    let mut pass = RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 100);
    let mut steps = Vec::new();
    while !pass.is_done() {
        steps.push(pass.step_within(&c, Some(std::time::Duration::ZERO)).unwrap());
    }
    assert_eq!(steps, vec![1, 1, 1, 1, 0], "one row per chunk; the last due row ends its phase");
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&c, "SELECT count(*) FROM delivery_attempts"), 0);
}

#[test]
fn a_chunk_in_the_callers_transaction_rolls_back_with_it() {
    let mut c = db();
    for seq in 0..5 {
        add(&c, seq, "delivered", NOW - 40 * DAY, NOW - 40 * DAY + 1000);
    }
    let mut pass = RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 100);
    let before = pass.clone();
    {
        let tx = c.transaction().unwrap();
        assert_eq!(pass.step_within(&tx, None).unwrap(), 5);
        assert_eq!(count(&tx, "SELECT count(*) FROM messages"), 0, "deleted inside the transaction");
        // Dropped: rolled back, as when the group's commit fails.
    }
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 5, "the rows are back");
    assert_eq!(count(&c, "SELECT count(*) FROM delivery_attempts"), 5, "their attempts too");
    // The writer restores the pass it had before the group; it deletes them again.
    let mut pass = before;
    assert_eq!(pass.run_to_end(&c).unwrap(), 5);
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 0);
}

/// Makes deleting message `id` fail (as a full disk would), on `c`.
fn refuse_deleting(c: &Connection, id: i64) {
    c.execute_batch(&format!(
        "CREATE TEMP TRIGGER refuse BEFORE DELETE ON messages WHEN old.id = {id}
         BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ))
    .unwrap();
}

#[test]
fn a_failing_chunk_leaves_the_pass_and_the_rows_as_they_were() {
    let c = db();
    let ids: Vec<i64> =
        (0..5).map(|seq| add(&c, seq, "delivered", NOW - 40 * DAY, NOW - 40 * DAY + 1000)).collect();
    refuse_deleting(&c, ids[2]);
    let mut pass = RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 100);
    let before = pass.clone();
    assert!(pass.step_within(&c, None).is_err(), "the third delete fails");
    assert_eq!(pass, before, "counters and phase unchanged");
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 5, "the two deleted first are back");
    c.execute_batch("DROP TRIGGER refuse").unwrap();
    assert_eq!(pass.run_to_end(&c).unwrap(), 5);
}

#[test]
fn a_failing_chunk_under_a_savepoint_leaves_the_rest_of_the_transaction_to_commit() {
    let mut c = db();
    let ids: Vec<i64> =
        (0..5).map(|seq| add(&c, seq, "delivered", NOW - 40 * DAY, NOW - 40 * DAY + 1000)).collect();
    refuse_deleting(&c, ids[2]);
    let mut pass = RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 100);
    let before = pass.clone();
    let mut tx = c.transaction().unwrap();
    // The group's own work, then its chunk.
    let new = add(&tx, 0, "pending", NOW, NOW);
    assert!(pass.step_under_savepoint(&mut tx, None).is_err());
    assert_eq!(pass, before);
    tx.commit().unwrap();
    assert_eq!(
        count(&c, &format!("SELECT count(*) FROM messages WHERE id = {new}")),
        1,
        "the group's insert stays"
    );
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 6, "and every old row");

    c.execute_batch("DROP TRIGGER refuse").unwrap();
    let mut tx = c.transaction().unwrap();
    assert_eq!(pass.step_under_savepoint(&mut tx, None).unwrap(), 5);
    tx.commit().unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 1, "a chunk that succeeds commits with the group");
}

/// A message for the writer, with a unique messageId.
fn new_message(n: usize) -> crate::storage::messages::NewMessage {
    crate::storage::messages::NewMessage {
        message_id: format!("live-{n}"),
        meter_id: format!("M{:03}", n % 7),
        site_id: "S1".into(),
        local_market: "de".into(),
        data_feed_type: "electricity".into(),
        datapoints: 4,
        body: crate::storage::stored_body::StoredBody::pack(format!("{{\"n\":{n}}}").as_bytes()),
    }
}

#[test]
fn a_pass_while_requests_keep_coming_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::StorageConfig { data_dir: dir.path().join("data"), ..Default::default() };
    let storage = crate::storage::Storage::open(&cfg).unwrap();
    storage.migrate().unwrap();
    let c = storage.open_connection().unwrap();
    for seq in 0..2000 {
        add(&c, seq, "delivered", NOW - 40 * DAY, NOW - 40 * DAY + 1000);
    }
    let (writer, thread) =
        crate::storage::ingest::IngestWriter::start(&storage, |a, b| a == b, Default::default(), |_| {})
            .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = writer.start_retention(RetentionPass::new(NOW - 30 * DAY, NOW - 90 * DAY, 10)).unwrap();
    // Requests keep coming while the pass runs: its chunks ride in their groups.
    let acknowledged: Vec<i64> = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..150 {
                    let outcome = writer.store(vec![new_message(t * 1000 + i)]).await.unwrap();
                    let crate::storage::messages::StoreOutcome::Inserted(id) = outcome[0] else {
                        panic!("{outcome:?}")
                    };
                    ids.push(id);
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let report = report.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
    assert!(report.finished);
    assert_eq!(report.deleted, 2000);
    assert_eq!(acknowledged.len(), 1200);
    assert_eq!(count(&c, "SELECT count(*) FROM messages"), 1200, "only the new messages are left");
    for id in acknowledged {
        assert_eq!(count(&c, &format!("SELECT count(*) FROM messages WHERE id = {id}")), 1, "{id} kept");
    }
    assert_eq!(count(&c, "SELECT count(*) FROM delivery_attempts"), 0, "the old attempts went along");
    drop(writer);
    thread.join().unwrap();
}
