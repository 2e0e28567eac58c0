//! Ingest (`POST /api/v1/service/send/messages`) through the real server:
//! every validation code, content type, body limits (chunked), malformed
//! bodies, batches with mixed items, idempotency and `Conflict`, the disk
//! floor and the pending cap. No eSight here: nothing is delivered.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::esight::wait_until;
use crate::common::http::{raw_connect, raw_read_until, raw_send};
use crate::common::session::{MESSAGES, Session, fixture, message, unique_id};
use crate::common::{spawn_app, spawn_app_with};

/// Asserts a `422` whose only rejected item is index 0 with `code`.
fn assert_rejected(r: &crate::common::Reply, code: &str) {
    assert_eq!(r.status, 422, "{code}: {}", r.text());
    let v = r.json();
    assert_eq!(v["accepted"], json!([]), "{v}");
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{v}");
    assert_eq!(rejected[0]["index"], 0, "{v}");
    assert_eq!(rejected[0]["code"], code, "{v}");
    assert!(rejected[0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

fn count(s: &Session, query: &str) -> usize {
    s.list(query)["items"].as_array().unwrap().len()
}

#[test]
fn every_invalid_fixture_is_refused_with_its_code() {
    let s = Session::new(spawn_app());
    let dir = format!("{}/tests/fixtures/messages", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(code) = name.strip_prefix("invalid-").and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        assert_rejected(&s.post_bytes(fixture(&name).as_bytes()), code);
        seen += 1;
    }
    assert!(seen >= 7, "only {seen} invalid fixtures found");
    assert_eq!(count(&s, ""), 0, "nothing was stored");
}

#[test]
fn codes_without_fixtures_are_refused_too() {
    let s = Session::new(spawn_app());
    let mut m = message(&unique_id("feed"));
    m["header"]["gatewayTypeUrn"] = json!("urn:esight:assets:edm:lu");
    assert_rejected(&s.post(&m), "NoDataFeedType");
    m["header"]["gatewayTypeUrn"] = json!("urn:esight:assets:edm:lu:electricity:extra");
    assert_rejected(&s.post(&m), "NoDataFeedType");

    let mut m = message(&unique_id("meter"));
    m["header"]["gatewayUrn"] = json!("urn:esight:gateways:edm:lu:VPC:");
    assert_rejected(&s.post(&m), "NoMeterIDInJson");

    // The first failing check in the contract's order wins.
    let mut m = message("");
    m["header"]["gatewayUrn"] = json!("urn:esight:gateways:edm:lu:VPC:");
    m["gatewayData"]["datapointValues"] = json!([]);
    assert_rejected(&s.post(&m), "NoMeterIDInJson");
    let mut m = message(&unique_id("ts"));
    m["gatewayData"]["datapointValues"][1]["tsIso8601"] = json!("yesterday");
    assert_rejected(&s.post(&m), "NoDatapointValues");
}

#[test]
fn a_body_that_is_not_json_typed_gets_415() {
    let s = Session::new(spawn_app());
    let body = message(&unique_id("ct")).to_string();
    let r = s.raw("POST", MESSAGES, &[("Content-Type", "text/plain")], Some(body.as_bytes()));
    r.assert_error(415, "UnsupportedMediaType");
    let r = s.raw("POST", MESSAGES, &[], Some(body.as_bytes()));
    r.assert_error(415, "UnsupportedMediaType");
    assert_eq!(count(&s, ""), 0);
}

#[test]
fn a_chunked_body_over_the_limit_gets_413_before_its_end() {
    let s = Session::new(spawn_app_with(|c| c.server.max_body_bytes = 4096));
    let mut sock = raw_connect(s.app.addr, Duration::from_secs(10));
    let head = format!(
        "POST {MESSAGES} HTTP/1.1\r\nHost: t\r\nX-API-Key: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.key, s.token
    );
    raw_send(&mut sock, head.as_bytes());
    let chunk = format!("800\r\n{}\r\n", " ".repeat(0x800));
    for _ in 0..4 {
        raw_send(&mut sock, chunk.as_bytes());
    }
    // No terminating chunk: the answer must not wait for the end of the body.
    let text = raw_read_until(&mut sock, "}");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"RequestEntityTooLarge\""), "{text}");
    assert_eq!(count(&s, ""), 0);
}

#[test]
fn malformed_bodies_get_400() {
    let s = Session::new(spawn_app());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", br#"{"messageType": "consumption", "header": {"#.to_vec()),
        ("trailing garbage", format!("{} x", message("a")).into_bytes()),
        ("nested deeper than 128", {
            let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
            let mut m = message(&unique_id("deep"));
            m["extra"] = json!("DEEP");
            m.to_string().replace("\"DEEP\"", &deep).into_bytes()
        }),
        ("a deeply nested array body", format!("{}{}", "[".repeat(300), "]".repeat(300)).into_bytes()),
        ("invalid UTF-8 in an unknown field", {
            let mut m = message(&unique_id("utf8-extra"));
            m["extra"] = json!("\u{1}");
            let mut bytes = m.to_string().into_bytes();
            let at = bytes.windows(6).position(|w| w == b"\\u0001").unwrap();
            bytes.splice(at..at + 6, [0xc3, 0x28]);
            bytes
        }),
        ("invalid UTF-8", {
            let m = message(&unique_id("utf8")).to_string();
            let mut bytes = m.replace("consumption", "consumption\u{1}").into_bytes();
            let at = bytes.iter().position(|&b| b == 1).unwrap();
            bytes[at] = 0xff;
            bytes
        }),
    ];
    for (what, body) in cases {
        let r = s.post_bytes(&body);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        let e = &r.json()["error"];
        assert!(e["code"].as_str().is_some_and(|c| c == "BadRequest" || c == "InvalidJson"), "{what}: {e}");
    }
    assert_eq!(count(&s, ""), 0, "nothing was stored");
}

/// README's first steps once failed here: `curl -d @message.json` of a
/// file that did not exist sent an empty body, answered "not valid JSON
/// (line 1, column 0)". It is still `400 InvalidJson`, and now says the body
/// was empty; stored nothing.
#[test]
fn an_empty_body_is_told_it_is_empty() {
    let s = Session::new(spawn_app());
    for body in [&b""[..], b"   \n"] {
        let r = s.post_bytes(body);
        assert_eq!(r.status, 400, "{body:?}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["code"], "InvalidJson", "{e}");
        assert_eq!(
            e["message"], "the body is empty: send one message (a JSON object) or an array of messages",
            "{e}"
        );
    }
    let r = s.post_bytes(b" x");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("not valid JSON"), "{}", r.text());
    assert_eq!(count(&s, ""), 0, "nothing was stored");
}

#[test]
fn a_batch_answers_each_item_at_its_index() {
    let s = Session::new(spawn_app());
    let (a, b) = (unique_id("batch-a"), unique_id("batch-b"));
    let mut no_urn = message(&unique_id("batch-c"));
    no_urn["header"].as_object_mut().unwrap().remove("gatewayUrn");
    let mut no_id = message("x");
    no_id["header"].as_object_mut().unwrap().remove("messageId");
    let batch = json!([message(&a), no_urn, message(&b), no_id, 42]);
    let r = s.post(&batch);
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    let accepted = v["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 2, "{v}");
    assert_eq!((accepted[0]["index"].clone(), accepted[0]["messageId"].clone()), (json!(0), json!(a)));
    assert_eq!((accepted[1]["index"].clone(), accepted[1]["messageId"].clone()), (json!(2), json!(b)));
    for item in accepted {
        assert_eq!(item["status"], "pending");
        assert_eq!(item["duplicate"], false);
        assert!(item["id"].is_string(), "ids are strings: {item}");
    }
    let rejected: Vec<(Value, Value)> =
        v["rejected"].as_array().unwrap().iter().map(|r| (r["index"].clone(), r["code"].clone())).collect();
    assert_eq!(
        rejected,
        vec![
            (json!(1), json!("NoGatewayUrn")),
            (json!(3), json!("NoMessageId")),
            (json!(4), json!("InvalidJson"))
        ]
    );
    assert_eq!(count(&s, ""), 2);

    // An empty array accepts nothing.
    assert_eq!(s.post(&json!([])).status, 422);
}

#[test]
fn a_batch_over_1000_items_is_refused_whole() {
    let s = Session::new(spawn_app());
    let items: Vec<Value> = (0..1001).map(|i| message(&format!("{}_{i}", unique_id("big")))).collect();
    assert_eq!(s.post(&json!(items)).status, 400);
    assert_eq!(count(&s, ""), 0);
}

#[test]
fn the_same_message_again_is_a_duplicate_and_other_content_a_conflict() {
    let s = Session::new(spawn_app());
    let mid = unique_id("idem");
    let first = s.accept(&message(&mid));

    let r = s.post(&message(&mid));
    assert_eq!(r.status, 202, "{}", r.text());
    let again = &r.json()["accepted"][0];
    assert_eq!(again["id"], first.as_str(), "the first id comes back");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["messageId"], mid.as_str());

    let mut changed = message(&mid);
    changed["gatewayData"]["datapointValues"][0]["value"] = json!(99.5);
    assert_rejected(&s.post(&changed), "Conflict");
    assert_eq!(count(&s, &format!("message_id={mid}")), 1, "stored once");

    // Inside one batch: the repeat is a duplicate of the first, the changed copy a conflict.
    let other = unique_id("idem-batch");
    let mut changed = message(&other);
    changed["gatewayData"]["datapointValues"][0]["value"] = json!(1.5);
    let v = s.post(&json!([message(&other), message(&other), changed])).json();
    let accepted = v["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 2, "{v}");
    assert_eq!(accepted[0]["id"], accepted[1]["id"], "{v}");
    assert_eq!(
        (accepted[0]["duplicate"].clone(), accepted[1]["duplicate"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(v["rejected"][0]["index"], 2, "{v}");
    assert_eq!(v["rejected"][0]["code"], "Conflict", "{v}");
    assert_eq!(count(&s, &format!("message_id={other}")), 1);
}

#[test]
fn under_the_disk_floor_ingest_gets_507_and_stores_nothing() {
    let s = Session::new(spawn_app_with(|c| c.storage.min_free_bytes = u64::MAX / 4));
    wait_until(Duration::from_secs(10), "readiness to report the disk floor", || {
        s.app.get("/readyz").status == 503
    });
    let r = s.post(&message(&unique_id("full")));
    r.assert_error(507, "InsufficientStorage");
    let r = s.post(&json!([message(&unique_id("full-a")), message(&unique_id("full-b"))]));
    r.assert_error(507, "InsufficientStorage");
    assert_eq!(count(&s, ""), 0);
}

#[test]
fn the_pending_cap_answers_503_with_retry_after() {
    // No eSight configured: accepted messages stay pending.
    let s = Session::new(spawn_app_with(|c| c.delivery.max_pending = 2));
    s.accept(&message(&unique_id("cap")));
    s.accept(&message(&unique_id("cap")));
    let r = s.post(&message(&unique_id("cap")));
    r.assert_error(503, "ServiceUnavailable");
    let secs: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(secs > 0);
    assert_eq!(count(&s, ""), 2);
}
