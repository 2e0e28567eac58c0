//! The logs of a child `serve` with `log.format = "json"`: every line on
//! stdout and in the daily file is one JSON object with a timestamp, level
//! and target; the access-log line of a request (found by the `X-Request-Id`
//! the client sent, carried as the request span's `id`) names its method,
//! path (API key redacted), route pattern, status and latency; no password,
//! API key or token used in the requests appears; and `log.files = false`
//! logs to stdout alone.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::cli_identity::{cli_key, cli_ok, login, token};
use crate::common::http::request;
use crate::common::process::{ChildServer, bin, write_config};

const PASSWORD: &str = "Log-test-pass-31";
const WRONG_PASSWORD: &str = "Log-test-pass-32";

/// Stops the server with SIGTERM (flushing its log writers); its stdout lines.
fn stop(mut server: ChildServer) -> Vec<String> {
    server.signal(rustix::process::Signal::TERM);
    assert_eq!(server.wait(Duration::from_secs(30)), Some(0));
    server.lines.lock().unwrap().clone()
}

/// Every line of every file under `dir`.
fn file_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

/// Parses every line as a JSON log record with the common fields.
fn records(lines: &[String], source: &str) -> Vec<Value> {
    assert!(!lines.is_empty(), "no lines in the {source}");
    lines
        .iter()
        .map(|line| {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{source}: not JSON ({e}): {line}"));
            let ts = v["timestamp"].as_str().unwrap_or_else(|| panic!("{source}: no timestamp: {line}"));
            assert!(OffsetDateTime::parse(ts, &Rfc3339).is_ok(), "{source}: timestamp {ts}");
            let level = v["level"].as_str().unwrap_or_default();
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
                "{source}: level in {line}"
            );
            assert!(v["target"].as_str().is_some_and(|t| t.starts_with("energyload")), "{source}: {line}");
            v
        })
        .collect()
}

/// The access-log record of the request with id `rid`.
fn access<'a>(records: &'a [Value], rid: &str) -> &'a Value {
    let found: Vec<&Value> =
        records.iter().filter(|r| r["target"] == "energyload::access" && r["span"]["id"] == rid).collect();
    assert_eq!(found.len(), 1, "one access line for {rid}");
    found[0]
}

#[test]
fn json_logs_carry_the_access_fields_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    cli_ok(&config, &["user", "add", "logger", "--role", "admin", "--password-file", pw.to_str().unwrap()]);
    let (key, _) = cli_key(&config, "logs");
    let server = ChildServer::start(&config);
    let base = server.base();

    login(&server, &key, "logger", WRONG_PASSWORD).assert_error(401, "InvalidCredentials");
    let jwt = token(&server, &key, "logger", PASSWORD);
    let bearer = format!("Bearer {jwt}");
    let headers = [("X-API-Key", key.as_str()), ("Authorization", &bearer), ("X-Request-Id", "log-user-1")];
    assert_eq!(request("GET", &format!("{base}/user"), &headers, None).status, 200);
    let by_query = format!("{base}/user?key={key}");
    let headers = [("Authorization", bearer.as_str()), ("X-Request-Id", "log-user-2")];
    assert_eq!(request("GET", &by_query, &headers, None).status, 200);
    let headers = [("X-Request-Id", "log-missing-3")];
    assert_eq!(request("GET", &format!("{base}/no/such/page"), &headers, None).status, 404);

    let stdout = stop(server);
    let files = file_lines(&dir.path().join("data/logs"));
    let from_stdout = records(&stdout, "stdout");
    let from_files = records(&files, "log file");

    for records in [&from_stdout, &from_files] {
        let line = access(records, "log-user-1");
        assert_eq!(line["level"], "INFO");
        let fields = &line["fields"];
        assert_eq!(fields["method"], "GET");
        assert_eq!(fields["path"], "/user");
        assert_eq!(fields["route"], "/user");
        assert_eq!(fields["status"], 200);
        assert!(fields["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
        assert_eq!(fields["client"], "127.0.0.1");

        let line = access(records, "log-user-2");
        assert_eq!(line["fields"]["path"], "/user?key=<redacted>");
        let line = access(records, "log-missing-3");
        assert_eq!(line["fields"]["route"], "(unmatched)");
        assert_eq!(line["fields"]["status"], 404);
    }
    assert_eq!(
        access(&from_stdout, "log-user-1")["fields"],
        access(&from_files, "log-user-1")["fields"],
        "the file holds the same lines as stdout"
    );

    let everything = format!("{}\n{}", stdout.join("\n"), files.join("\n"));
    let signature = jwt.rsplit('.').next().unwrap();
    for secret in [PASSWORD, WRONG_PASSWORD, key.as_str(), jwt.as_str(), signature] {
        assert!(!everything.contains(secret), "a secret ({}…) in the logs", &secret[..6]);
    }
}

#[test]
fn with_files_off_logs_go_to_stdout_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = ChildServer::start_with(
        Command::new(bin()).args(["serve", "--config"]).arg(&config).env("ENERGYLOAD_LOG_FILES", "false"),
    );
    let headers = [("X-Request-Id", "stdout-only-1")];
    assert_eq!(request("GET", &format!("{}/healthz", server.base()), &headers, None).status, 200);
    let stdout = stop(server);
    let records = records(&stdout, "stdout");
    assert_eq!(access(&records, "stdout-only-1")["fields"]["route"], "/healthz");
    assert!(dir.path().join("data/energyload.db").is_file(), "the server ran on its data directory");
    assert!(!dir.path().join("data/logs").exists(), "no log directory with log.files = false");
}

/// `delivery.workers` from earlier versions still loads, is ignored, and
/// says so at start, naming its replacement.
#[test]
fn the_deprecated_delivery_workers_key_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[delivery]\nworkers = 16\n");
    let server = ChildServer::start(&config);
    assert_eq!(request("GET", &format!("{}/readyz", server.base()), &[], None).status, 200);
    let stdout = stop(server);
    let warning = stdout
        .iter()
        .find(|l| l.contains("delivery.workers is deprecated"))
        .unwrap_or_else(|| panic!("no deprecation warning in {stdout:?}"));
    assert!(warning.contains("delivery.max_in_flight"), "{warning}");
    assert!(warning.contains("WARN") || warning.contains("warn"), "{warning}");
}

/// `log.keep_files` is handed to the rolling appender: at start-up it keeps
/// the newest `keep_files - 1` daily files next to the one it opens, and
/// leaves files that are not its own alone.
#[test]
fn old_daily_files_beyond_keep_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("data/logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Written oldest first: the appender orders its files by creation time.
    let old: Vec<String> = (1..=6).map(|day| format!("energyload.2026-10-{day:02}.log")).collect();
    for name in &old {
        std::fs::write(logs.join(name), "{}\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(logs.join("operator-notes.txt"), "keep me").unwrap();
    // `write_config` ends with the `[log]` section: the extra line lands in it.
    let config = write_config(dir.path(), "keep_files = 3");
    stop(ChildServer::start(&config));

    let mut names: Vec<String> =
        std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let today = format!("energyload.{}.log", OffsetDateTime::now_utc().date());
    let mut expected = vec![old[4].clone(), old[5].clone(), today, "operator-notes.txt".to_string()];
    expected.sort();
    assert_eq!(names, expected);
}
