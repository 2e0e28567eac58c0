//! The plans of the queries that must stay fast over millions of rows: the
//! message lists (each filter on its index, newest first without a sort),
//! the delivery claim (the partial due index), the counts by status (a
//! covering index range) and the retention prune. A schema or query change
//! that loses an index fails here, not in production.
//!
//! Plans are read with `EXPLAIN QUERY PLAN` on a migrated database holding a
//! few thousand messages across statuses, meters and sites (and `ANALYZE`d,
//! so the planner sees skewed data as it would in production).

use rusqlite::{Connection, params_from_iter};

use super::delivery::CLAIM_DUE;
use super::message_queries::{COUNT_BY_STATUS, MessageFilter, MessageStatus, list_sql};
use super::migrations;

fn db() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    migrations::apply(&mut c).unwrap();
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
         INSERT INTO meters (id, meter_id) SELECT i, 'M' || i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
         INSERT INTO sites (id, site_id) SELECT i, 'S' || i FROM n;
         INSERT INTO feeds (id, local_market, data_feed_type) VALUES (1, 'lu', 'electricity'), (2, 'hu', 'gas');
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO messages (id, message_key, status, meter, site, feed, datapoints, attempts, cycle_started,
                               body_format, body, updated_at, delivered_at, next_attempt_at, error_code)
         SELECT i << 16, i * 7919 - 20000, CASE WHEN i % 50 = 0 THEN 0 WHEN i % 97 = 0 THEN 3 ELSE 2 END,
                i % 200 + 1, i % 20 + 1, i % 2 + 1, 4, 1, i, 0, x'7B7D', i, i, CASE WHEN i % 50 = 0 THEN i END,
                CASE WHEN i % 97 = 0 THEN 'E_' || (i % 3) END
         FROM n;
         ANALYZE;",
    )
    .unwrap();
    c
}

/// The plan's detail lines, joined.
fn plan(c: &Connection, sql: &str, args: Vec<rusqlite::types::Value>) -> String {
    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(3)).unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
}

fn list_plan(c: &Connection, f: MessageFilter, before: Option<i64>) -> String {
    let (sql, args) = list_sql(&f, before, 50);
    plan(c, &sql, args)
}

fn assert_no_sort_or_scan(plan: &str) {
    assert!(!plan.contains("TEMP B-TREE"), "sorts:\n{plan}");
    assert!(!plan.contains("SCAN m\n") && !plan.ends_with("SCAN m"), "scans the table:\n{plan}");
}

#[test]
fn the_unfiltered_list_walks_the_primary_key_backwards() {
    let c = db();
    for before in [None, Some(1000 << 16)] {
        let p = list_plan(&c, MessageFilter::default(), before);
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        assert!(!p.contains("USING INDEX") && !p.contains("COVERING INDEX"), "{p}");
    }
}

#[test]
fn each_list_filter_uses_its_index_newest_first() {
    let c = db();
    let cases = [
        (MessageFilter { status: Some(MessageStatus::Failed), ..Default::default() }, "messages_by_status"),
        (MessageFilter { meter_id: Some("M7".into()), ..Default::default() }, "messages_by_meter"),
        (MessageFilter { site_id: Some("S3".into()), ..Default::default() }, "messages_by_site"),
        (MessageFilter { message_id: Some("m42".into()), ..Default::default() }, "messages_by_message_key"),
        (
            MessageFilter {
                meter_id: Some("M7".into()),
                since: Some(10),
                until: Some(4000),
                ..Default::default()
            },
            "messages_by_meter",
        ),
    ];
    for (filter, index) in cases {
        for before in [None, Some(3000 << 16)] {
            let p = list_plan(&c, filter.clone(), before);
            assert!(p.contains(&format!("INDEX {index}")), "{filter:?} should use {index}:\n{p}");
            assert_no_sort_or_scan(&p);
        }
    }
}

#[test]
fn failed_lists_of_a_meter_or_site_and_error_code_lists_use_their_partial_indexes() {
    let c = db();
    let failed = Some(MessageStatus::Failed);
    let cases = [
        (
            MessageFilter { status: failed, meter_id: Some("M7".into()), ..Default::default() },
            "messages_failed_by_meter",
        ),
        (
            MessageFilter { status: failed, site_id: Some("S3".into()), ..Default::default() },
            "messages_failed_by_site",
        ),
        (MessageFilter { error_code: Some("E_X".into()), ..Default::default() }, "messages_by_error_code"),
        (
            MessageFilter { status: failed, error_code: Some("E_X".into()), ..Default::default() },
            "messages_by_error_code",
        ),
    ];
    for (filter, index) in cases {
        for before in [None, Some(3000 << 16)] {
            let p = list_plan(&c, filter.clone(), before);
            assert!(p.contains(&format!("INDEX {index}")), "{filter:?} should use {index}:\n{p}");
            assert_no_sort_or_scan(&p);
        }
    }
    // Another status with a meter keeps the full meter index (the partial
    // one holds failed rows only).
    let delivered_of_meter = MessageFilter {
        status: Some(MessageStatus::Delivered),
        meter_id: Some("M7".into()),
        ..Default::default()
    };
    let p = list_plan(&c, delivered_of_meter, None);
    assert!(!p.contains("messages_failed_by_meter"), "{p}");
}

#[test]
fn the_claim_uses_the_partial_due_index() {
    let c = db();
    let args = vec![1_000_000.into(), 2_000_000.into(), 100.into()];
    let p = plan(&c, CLAIM_DUE, args);
    assert!(p.contains("INDEX messages_due"), "{p}");
    assert!(!p.contains("TEMP B-TREE"), "{p}");
    // The outer UPDATE finds each claimed row by its id.
    assert!(
        p.contains("INTEGER PRIMARY KEY (rowid=?)")
            || p.contains("USING ROWID SEARCH ON TABLE messages FOR IN-OPERATOR"),
        "{p}"
    );
}

#[test]
fn counts_by_status_read_a_range_of_the_covering_status_index() {
    let c = db();
    let p = plan(&c, COUNT_BY_STATUS, vec![MessageStatus::Delivered.code().into()]);
    assert!(p.contains("COVERING INDEX messages_by_status (status=?)"), "{p}");
}

#[test]
fn the_attempt_log_and_the_attempt_statistics_use_their_keys() {
    let c = db();
    let log =
        plan(&c, "SELECT at FROM delivery_attempts WHERE message = ?1 ORDER BY attempt", vec![1.into()]);
    assert!(log.contains("PRIMARY KEY (message=?)"), "{log}");
    assert!(!log.contains("TEMP B-TREE"), "{log}");
    let stats =
        plan(&c, "SELECT count(*) FROM delivery_attempts WHERE at >= ?1 AND outcome = 0", vec![1.into()]);
    assert!(stats.contains("INDEX attempts_by_time (at>?)"), "{stats}");
}
