//! Idempotency on `message_key` (schema 9): two messageIds whose keys
//! collide are two messages — stored, found as duplicates, refused as
//! conflicts, listed and claimed each under its own messageId. The pair
//! below is a real collision of the 48-bit key (found by hashing
//! `msg-0` … `msg-63999999` and sorting the keys), so every path runs as it
//! would in production.

use rusqlite::Connection;

use super::*;
use crate::storage::delivery;
use crate::storage::message_key::message_key;
use crate::storage::migrations;

const A: &str = COLLIDING[0];
const B: &str = COLLIDING[1];
const COLLIDING: [&str; 2] = ["msg-8538332", "msg-48216639"];
const NOW: i64 = 1_800_000_000_000;

fn db() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    migrations::apply(&mut c).unwrap();
    c
}

/// The fixture message under `message_id`, its first value set to `value`.
fn message(message_id: &str, value: &str) -> NewMessage {
    let sample = include_str!("../../../tests/fixtures/messages/valid-1.json");
    let body = sample.replace("electricity_lu_20210131T0000", message_id);
    assert_ne!(body, sample);
    let first_value = body.find("\"value\"").expect("a value");
    let body = format!("{}\"value\": {value},{}", &body[..first_value], {
        let rest = &body[first_value..];
        &rest[rest.find(',').unwrap() + 1..]
    });
    NewMessage {
        message_id: message_id.to_owned(),
        meter_id: "M1".into(),
        site_id: "S1".into(),
        local_market: "lu".into(),
        data_feed_type: "electricity".into(),
        datapoints: 4,
        body: StoredBody::pack(body.as_bytes()),
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a == b
}

fn store(c: &mut Connection, ids: &mut IdGenerator, items: &[NewMessage]) -> Vec<StoreOutcome> {
    let tx = c.transaction().unwrap();
    let out = store_batch(&tx, ids, &mut Dimensions::new(), NOW, items, same_bytes).unwrap();
    tx.commit().unwrap();
    out
}

fn inserted(outcome: StoreOutcome) -> i64 {
    match outcome {
        StoreOutcome::Inserted(id) => id,
        other => panic!("expected an insert: {other:?}"),
    }
}

#[test]
fn the_pair_collides() {
    assert_ne!(A, B);
    assert_eq!(message_key(A), message_key(B));
}

#[test]
fn two_message_ids_sharing_a_key_are_two_messages_with_exact_idempotency() {
    let mut c = db();
    let mut ids = IdGenerator::after(0);
    let a = inserted(store(&mut c, &mut ids, &[message(A, "1.5")])[0]);
    let b = inserted(store(&mut c, &mut ids, &[message(B, "1.5")])[0]);
    assert_ne!(a, b);
    let keys: Vec<i64> = c
        .prepare("SELECT message_key FROM messages ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(keys, [message_key(A); 2], "both rows under the one key");

    // Each is a duplicate of itself, whichever row the key finds first.
    let again = store(&mut c, &mut ids, &[message(B, "1.5"), message(A, "1.5")]);
    assert_eq!(
        again,
        [
            StoreOutcome::Duplicate(b, MessageStatus::Pending),
            StoreOutcome::Duplicate(a, MessageStatus::Pending)
        ]
    );
    // Other content under either messageId is a conflict with that one.
    let other = store(&mut c, &mut ids, &[message(A, "2.5"), message(B, "2.5")]);
    assert_eq!(other, [StoreOutcome::Conflict(a), StoreOutcome::Conflict(b)]);
    let count: i64 = c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap();
    assert_eq!(count, 2);
}

#[test]
fn a_colliding_pair_in_one_batch_is_stored_twice_and_repeats_in_it_are_caught() {
    let mut c = db();
    let mut ids = IdGenerator::after(0);
    let out =
        store(&mut c, &mut ids, &[message(A, "1.5"), message(B, "1.5"), message(B, "1.5"), message(A, "9")]);
    let (a, b) = (inserted(out[0]), inserted(out[1]));
    assert_eq!(out[2..], [StoreOutcome::Duplicate(b, MessageStatus::Pending), StoreOutcome::Conflict(a)]);
}

#[test]
fn lists_and_the_claim_read_each_message_id_from_its_body() {
    let mut c = db();
    let mut ids = IdGenerator::after(0);
    let a = inserted(store(&mut c, &mut ids, &[message(A, "1.5")])[0]);
    let b = inserted(store(&mut c, &mut ids, &[message(B, "1.5")])[0]);
    for (message_id, id) in [(A, a), (B, b)] {
        let f = MessageFilter { message_id: Some(message_id.into()), ..Default::default() };
        // LIMIT 1 counts only real matches: the newer colliding row is not one.
        let rows = list(&c, &f, None, 1).unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.id, r.message_id.as_str())).collect::<Vec<_>>(),
            [(id, message_id)]
        );
        assert!(list(&c, &f, Some(id), 50).unwrap().is_empty(), "nothing older matches");
    }
    let unknown = MessageFilter { message_id: Some("msg-unknown".into()), ..Default::default() };
    assert!(list(&c, &unknown, None, 50).unwrap().is_empty());
    let all: Vec<(i64, String)> = list(&c, &MessageFilter::default(), None, 50)
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.message_id))
        .collect();
    assert_eq!(all, [(b, B.to_owned()), (a, A.to_owned())]);
    let (detail, body) = get(&c, a).unwrap().unwrap();
    assert_eq!(detail.message_id, A);
    assert!(String::from_utf8(body).unwrap().contains(A));

    let claimed = delivery::claim_due(&c, NOW + 1, NOW + 60_000, 10).unwrap();
    let claimed: Vec<(i64, String)> = claimed.into_iter().map(|m| (m.id, m.message_id)).collect();
    assert_eq!(claimed, [(a, A.to_owned()), (b, B.to_owned())]);
}

#[test]
fn a_row_whose_body_has_no_message_id_is_reported_corrupt_not_listed_blank() {
    let mut c = db();
    let mut ids = IdGenerator::after(0);
    let a = inserted(store(&mut c, &mut ids, &[message(A, "1.5")])[0]);
    c.execute("UPDATE messages SET body_format = 0, body = x'7B7D' WHERE id = ?1", [a]).unwrap();
    let err = list(&c, &MessageFilter::default(), None, 50).unwrap_err().to_string();
    assert!(err.contains(&format!("message {a}")), "{err}");
    let f = MessageFilter { message_id: Some(A.into()), ..Default::default() };
    assert!(list(&c, &f, None, 50).unwrap().is_empty(), "a filter simply does not match it");
    let claim = delivery::claim_due(&c, NOW + 1, NOW + 60_000, 10).unwrap_err().to_string();
    assert!(claim.contains(&format!("message {a}")), "{claim}");
}
