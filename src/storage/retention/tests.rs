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
