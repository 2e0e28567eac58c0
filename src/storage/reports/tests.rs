//! Tests for error-report and quarantine storage on a migrated in-memory
//! database.

use rusqlite::{Connection, params};

use super::*;
use crate::domain::error_report::ErrorReport;

fn db() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    super::super::migrations::apply(&mut c).unwrap();
    c
}

fn add_message(c: &Connection, id: i64, status: &str, attempts: i64) {
    let status = crate::storage::messages::MessageStatus::parse(status).unwrap().code();
    crate::storage::messages::insert_test_dimensions(c);
    c.execute(
        "INSERT INTO messages (id, message_key, status, meter, site, feed, datapoints, attempts, body_format, body,
                               updated_at, lease_until, cycle_started)
         VALUES (?1, ?2, ?3, 1, 1, 1, 1, ?4, 0, x'7B7D', 1, 99, 1)",
        params![id, id, status, attempts],
    )
    .unwrap();
}

fn message_state(c: &Connection, id: i64) -> (String, Option<String>, Option<i64>) {
    let (status, code, lease): (i64, _, _) = c
        .query_row("SELECT status, error_code, lease_until FROM messages WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let status = crate::storage::messages::MessageStatus::from_code(status).unwrap().as_str().to_owned();
    (status, code, lease)
}

fn report(esight_id: &str, message_ref: &str, code: Option<&str>) -> NewReport {
    let errors = match code {
        Some(code) => format!(r#"[{{"errorCode": "{code}"}}, {{"errorCode": "E2"}}]"#),
        None => r#"[{"errorMessage": "bad"}]"#.to_owned(),
    };
    let body = format!(
        r#"{{"_id": "{esight_id}", "header": {{"messageId": "{message_ref}"}}, "errors": {errors}}}"#
    );
    let parsed = ErrorReport::parse(body.as_bytes()).unwrap();
    NewReport::from_report(&parsed, body.into_bytes(), 1_000)
}

fn count(c: &Connection, table: &str) -> i64 {
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[test]
fn a_report_is_built_from_the_parsed_report() {
    let r = report("e1", "electricity_lu_x_42", Some("E102"));
    assert_eq!(r.correlated.as_deref(), Some("42"));
    assert_eq!(r.error_count, 2);
    assert_eq!(r.error_code.as_deref(), Some("E102"));
    assert_eq!(r.received_at, 1_000);
    assert!(r.body.starts_with(b"{\"_id\""));
}

#[test]
fn a_delivered_message_becomes_rejected_and_a_repeat_stores_nothing() {
    let mut c = db();
    add_message(&c, 42, "delivered", 1);
    let first = store_report(&mut c, &report("e1", "electricity_lu_x_42", Some("E102"))).unwrap();
    assert!(first.first_time);
    assert_eq!(first.message, Some(42));
    assert_eq!(first.message_ref, "electricity_lu_x_42");
    assert_eq!(message_state(&c, 42), ("rejected".into(), Some("E102".into()), None));

    let mut again = report("e1", "other_7", None);
    again.body = b"different".to_vec();
    let second = store_report(&mut c, &again).unwrap();
    assert_eq!(second, StoredReport { first_time: false, ..first.clone() });
    assert_eq!(count(&c, "esight_errors"), 1);
    assert_eq!(report_by_id(&c, first.id).unwrap().unwrap().error_count, 2);
}

#[test]
fn uncorrelated_reports_are_stored_without_a_message() {
    let mut c = db();
    add_message(&c, 5, "delivered", 1);
    for (n, message_ref) in ["no-suffix", "trailing_", "abc_def", "abc_6"].iter().enumerate() {
        let stored = store_report(&mut c, &report(&format!("u{n}"), message_ref, None)).unwrap();
        assert!(stored.first_time);
        assert_eq!(stored.message, None, "{message_ref}");
    }
    assert_eq!(count(&c, "esight_errors"), 4);
    assert_eq!(message_state(&c, 5).0, "delivered");
}

#[test]
fn the_state_rule_decides_which_messages_become_rejected() {
    let mut c = db();
    let cases = [
        (1, "delivered", 1, "rejected"),
        (2, "delivering", 0, "rejected"),
        (3, "pending", 2, "rejected"),
        (4, "pending", 0, "pending"),
        (5, "failed", 3, "failed"),
    ];
    for (id, status, attempts, _) in cases {
        add_message(&c, id, status, attempts);
    }
    for (id, _, _, expected) in cases {
        let stored = store_report(&mut c, &report(&format!("s{id}"), &format!("m_{id}"), None)).unwrap();
        assert_eq!(stored.message, Some(id), "a report links to its message whatever the state");
        let (status, code, _) = message_state(&c, id);
        assert_eq!(status, expected, "message {id}");
        if expected == "rejected" {
            assert_eq!(code.as_deref(), Some(FALLBACK_ERROR_CODE));
        }
    }
}

#[test]
fn a_second_report_leaves_a_rejected_message_as_first_rejected() {
    let mut c = db();
    add_message(&c, 9, "delivered", 1);
    store_report(&mut c, &report("a", "m_9", Some("E1"))).unwrap();
    let second = store_report(&mut c, &report("b", "m_9", Some("E9"))).unwrap();
    assert!(second.first_time);
    assert_eq!(message_state(&c, 9).1.as_deref(), Some("E1"));
    let ids: Vec<_> = reports_for_message(&c, 9).unwrap().iter().map(|r| r.esight_id.clone()).collect();
    assert_eq!(ids, ["a", "b"]);
}

#[test]
fn lists_filter_and_page_newest_first() {
    let mut c = db();
    add_message(&c, 1, "delivered", 1);
    for n in 0..5 {
        let mut r = report(&format!("r{n}"), if n % 2 == 0 { "m_1" } else { "m_x" }, None);
        r.received_at = 100 * n;
        store_report(&mut c, &r).unwrap();
    }
    let esight_ids = |f: &ReportFilter, limit| -> Vec<String> {
        list_reports(&c, f, limit).unwrap().into_iter().map(|r| r.esight_id).collect()
    };
    assert_eq!(esight_ids(&ReportFilter::default(), 10), ["r4", "r3", "r2", "r1", "r0"]);
    assert_eq!(esight_ids(&ReportFilter { message: Some(1), ..Default::default() }, 10), ["r4", "r2", "r0"]);
    assert_eq!(esight_ids(&ReportFilter { esight_id: Some("r3".into()), ..Default::default() }, 10), ["r3"]);
    let window = ReportFilter { since: Some(100), until: Some(300), ..Default::default() };
    assert_eq!(esight_ids(&window, 10), ["r2", "r1"]);
    let page = list_reports(&c, &ReportFilter::default(), 2).unwrap();
    let next = ReportFilter { before_id: Some(page[1].id), ..Default::default() };
    assert_eq!(esight_ids(&next, 2), ["r2", "r1"]);
    assert_eq!(report_by_id(&c, 999).unwrap(), None);
    assert!(reports_for_message(&c, 2).unwrap().is_empty());
}

#[test]
fn quarantine_keeps_bodies_newest_first() {
    let c = db();
    let q = |n: i64| NewQuarantine {
        received_at: n,
        request_id: (n % 2 == 0).then(|| format!("req-{n}")),
        code: "InvalidJsonReceived".into(),
        reason: "errors must be an array".into(),
        size: 10 * n,
        body: format!("body {n}").into_bytes(),
    };
    let ids: Vec<i64> = (1..=3).map(|n| quarantine(&c, &q(n)).unwrap()).collect();
    let all = list_quarantine(&c, None, 10).unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[2], ids[1], ids[0]]);
    assert_eq!(all[1].request_id.as_deref(), Some("req-2"));
    assert_eq!(all[1].body, b"body 2");
    assert_eq!(all[1].size, 20);
    let older = list_quarantine(&c, Some(ids[2]), 1).unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, ids[1]);
}
