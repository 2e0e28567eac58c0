//! The compat inbox import (`POST …/sendJsons`, `GET …/sendJson/{prefix}`):
//! files become messages, move to `accepted/` or `failed/<Code>/` after the
//! commit, answers in text or JSON, and names that could leave the inbox
//! are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::http::{raw_connect, raw_read_until, raw_send};
use crate::common::session::{Session, fixture};
use crate::common::spawn_app;

const SEND: &str = "/api/v1/service/send";

fn inbox(s: &Session) -> PathBuf {
    let dir = s.app.config.inbox_dir();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn put(dir: &Path, name: &str, fixture_name: &str) {
    std::fs::write(dir.join(name), fixture(fixture_name)).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn message_count(s: &Session) -> usize {
    s.list("limit=500")["items"].as_array().unwrap().len()
}

#[test]
fn send_jsons_imports_every_file_and_moves_it_after_the_commit() {
    let s = Session::new(spawn_app());
    let dir = inbox(&s);
    put(&dir, "valid-1.json", "valid-1.json");
    put(&dir, "valid-2.json", "valid-2.json");
    put(&dir, "bad.json", "invalid-NoGatewayUrn.json");
    std::fs::write(dir.join("notes.txt"), "not a message").unwrap();
    std::fs::write(dir.join(".hidden.json"), "{}").unwrap();

    let r = s.raw("POST", &format!("{SEND}/sendJsons"), &[], None);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.text(), "Success: 3 file(s) have been processed");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    assert_eq!(names(&dir.join("accepted")), vec!["valid-1.json", "valid-2.json"]);
    assert_eq!(names(&dir.join("failed")), vec!["NoGatewayUrn"]);
    assert_eq!(names(&dir.join("failed/NoGatewayUrn")), vec!["bad.json"]);
    assert_eq!(names(&dir), vec![".hidden.json", "accepted", "failed", "notes.txt"]);
    assert_eq!(message_count(&s), 2);
    let stored = s.list("message_id=electricity_lu_20210131T0000");
    assert_eq!(stored["items"].as_array().unwrap().len(), 1);

    let r = s.raw("POST", &format!("{SEND}/sendJsons"), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Empty bucket! Nothing to send to e-sight");
    assert_eq!(message_count(&s), 2);
}

#[test]
fn send_json_imports_only_files_with_the_prefix() {
    let s = Session::new(spawn_app());
    let dir = inbox(&s);
    put(&dir, "lu-1.json", "valid-1.json");
    put(&dir, "lu-3.json", "valid-3.json");
    put(&dir, "hu-2.json", "valid-2.json");

    let r = s.raw("GET", &format!("{SEND}/sendJson/lu-"), &[], None);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.text(), "Success: 2 file(s) have been processed");
    assert_eq!(names(&dir.join("accepted")), vec!["lu-1.json", "lu-3.json"]);
    assert!(dir.join("hu-2.json").exists(), "a file without the prefix stays");
    assert_eq!(message_count(&s), 2);

    let r = s.raw("GET", &format!("{SEND}/sendJson/nothing-like-this"), &[], None);
    assert_eq!((r.status, r.text().as_str()), (200, "Empty bucket! Nothing to send to e-sight"));

    // JSON form; a file holding an already stored message is a duplicate.
    put(&dir, "hu-again.json", "valid-1.json");
    let r = s.raw("GET", &format!("{SEND}/sendJson/hu"), &[("Accept", "application/json")], None);
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["processed"], 2, "{v}");
    assert_eq!(v["rejected"], Value::Array(vec![]));
    let accepted = v["accepted"].as_array().unwrap();
    let files: Vec<&str> = accepted.iter().map(|a| a["file"].as_str().unwrap()).collect();
    assert_eq!(files, vec!["hu-2.json", "hu-again.json"], "{v}");
    assert_eq!(accepted[0]["duplicate"], false);
    assert_eq!(accepted[1]["duplicate"], true, "{v}");
    assert!(accepted.iter().all(|a| a["id"].is_string() && a["messageId"].is_string()), "{v}");
    assert_eq!(message_count(&s), 3, "the duplicate was not stored again");

    let r = s.raw("POST", &format!("{SEND}/sendJsons"), &[("Accept", "application/json")], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["processed"], 0);
}

#[test]
fn invalid_files_go_to_failed_under_their_code_and_report_it() {
    let s = Session::new(spawn_app());
    let dir = inbox(&s);
    put(&dir, "a.json", "invalid-NoMessageId.json");
    put(&dir, "b.json", "invalid-NoDatapointValues.json");
    std::fs::write(dir.join("c.json"), "{ not json").unwrap();
    let mut deep: Value = serde_json::from_str(&fixture("valid-3.json")).unwrap();
    deep["extra"] = Value::String("DEEP".into());
    let nested = format!("{}0{}", "[".repeat(200), "]".repeat(200));
    std::fs::write(dir.join("d.json"), deep.to_string().replace("\"DEEP\"", &nested)).unwrap();
    let r = s.raw("POST", &format!("{SEND}/sendJsons"), &[("Accept", "application/json")], None);
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["processed"], 4);
    assert_eq!(v["accepted"], Value::Array(vec![]));
    let codes: Vec<(&str, &str)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["file"].as_str().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("a.json", "NoMessageId"),
            ("b.json", "NoDatapointValues"),
            ("c.json", "InvalidJson"),
            ("d.json", "InvalidJson")
        ]
    );
    assert_eq!(names(&dir.join("failed/NoMessageId")), vec!["a.json"]);
    assert_eq!(names(&dir.join("failed/NoDatapointValues")), vec!["b.json"]);
    assert_eq!(names(&dir.join("failed/InvalidJson")), vec!["c.json", "d.json"]);
    assert_eq!(message_count(&s), 0);
}

#[test]
fn names_that_could_leave_the_inbox_are_refused() {
    let s = Session::new(spawn_app());
    let dir = inbox(&s);
    // A message file just outside the inbox must never be imported.
    std::fs::write(dir.parent().unwrap().join("outside.json"), fixture("valid-1.json")).unwrap();
    put(&dir, "inside.json", "valid-2.json");
    for name in ["..", "..%2Foutside", "a..b", "%2E%2E", "%2Foutside", "a%2Fb", "a%5Cb", "a%00b", "%00"] {
        let r = s.raw("GET", &format!("{SEND}/sendJson/{name}"), &[], None);
        assert_eq!(r.status, 400, "sendJson/{name}: {}", r.text());
        r.assert_error(400, "BadRequest");
    }
    // A raw backslash (not valid in a URI for most clients) over a socket.
    let mut sock = raw_connect(s.app.addr, Duration::from_secs(10));
    let req = format!(
        "GET {SEND}/sendJson/in\\side HTTP/1.1\r\nHost: t\r\nX-API-Key: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        s.key, s.token
    );
    raw_send(&mut sock, req.as_bytes());
    let text = raw_read_until(&mut sock, "\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");

    assert!(dir.parent().unwrap().join("outside.json").exists());
    assert!(dir.join("inside.json").exists(), "nothing was imported");
    assert_eq!(message_count(&s), 0);
}

#[test]
fn with_a_poll_interval_the_server_imports_the_inbox_by_itself() {
    let s = Session::new(crate::common::spawn_app_with(|c| {
        c.inbox.poll_interval = energyload::config::Duration::from_millis(50);
    }));
    let dir = inbox(&s);
    put(&dir, "valid-1.json", "valid-1.json");
    put(&dir, "bad.json", "invalid-NoGatewayUrn.json");
    crate::common::esight::wait_until(Duration::from_secs(10), "the poller to import the inbox", || {
        names(&dir.join("accepted")) == ["valid-1.json"]
    });
    assert_eq!(names(&dir.join("failed/NoGatewayUrn")), vec!["bad.json"]);
    assert_eq!(message_count(&s), 1);

    // Later files are picked up too, and a repeat is a duplicate, not a copy.
    put(&dir, "again.json", "valid-1.json");
    put(&dir, "second.json", "valid-2.json");
    crate::common::esight::wait_until(Duration::from_secs(10), "the second import", || {
        names(&dir.join("accepted")).len() == 3
    });
    assert_eq!(message_count(&s), 2);
}
