//! The logs of a child `serve` with `log.format = "json"`: every line on
//! stdout and in the daily file is one JSON object with a timestamp, level
//! and target; the access-log line of a request (found by the `X-Request-Id`
//! the client sent, carried as the request span's `id`) names its method,
//! path (API key redacted), route pattern, status and latency; no password,
//! API key or token used in the requests appears; and `log.files = false`
//! logs to stdout alone. The access log (its own writer, `access_log`) has
//! the same shape in text, writes the last line before a graceful stop
//! ends, is off with `log.access = false` and keeps only errors with
//! `log.access_sample = 0.0`.

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

/// The text-format access line of request `rid` from `lines`: exactly one,
/// with an RFC 3339 timestamp; the rest after the timestamp.
fn text_access(lines: &[String], rid: &str) -> String {
    let marker = format!(" INFO request{{id={rid}}}: energyload::access: ");
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(&marker)).collect();
    assert_eq!(found.len(), 1, "one access line for {rid} in {lines:?}");
    let (ts, rest) = found[0].split_once(' ').unwrap();
    assert!(OffsetDateTime::parse(ts, &Rfc3339).is_ok(), "timestamp {ts}");
    rest.to_string()
}

/// Whether any line is an access line (text or JSON).
fn has_access_line(lines: &[String]) -> bool {
    lines.iter().any(|l| l.contains("energyload::access"))
}

#[test]
fn text_access_lines_carry_the_fields_on_stdout_and_in_the_file_up_to_the_last_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = ChildServer::start_with(
        Command::new(bin()).args(["serve", "--config"]).arg(&config).env("ENERGYLOAD_LOG_FORMAT", "text"),
    );
    let base = server.base();
    let headers = [("X-Request-Id", "text-1")];
    assert_eq!(request("GET", &format!("{base}/healthz?key=hidden-1&x=1"), &headers, None).status, 200);
    // The parameter's name in another case is an API key too.
    let headers = [("X-Request-Id", "text-2")];
    assert_eq!(request("GET", &format!("{base}/healthz?KEY=hidden-2"), &headers, None).status, 200);
    let headers = [("X-Request-Id", "text-3")];
    assert_eq!(request("GET", &format!("{base}/no/such/page"), &headers, None).status, 404);
    // Stopped right after the last answer: its line must be written at the stop.
    let stdout = stop(server);
    let files = file_lines(&dir.path().join("data/logs"));

    for lines in [&stdout, &files] {
        let line = text_access(lines, "text-1");
        let (head, latency) = line.split_once(" latency_ms=").unwrap();
        assert_eq!(
            head,
            " INFO request{id=text-1}: energyload::access: method=GET path=/healthz?key=<redacted>&x=1 \
             route=\"/healthz\" status=200"
        );
        let (ms, client) = latency.split_once(' ').unwrap();
        assert!(ms.parse::<f64>().is_ok_and(|ms| ms >= 0.0), "{line}");
        assert_eq!(client, "client=127.0.0.1");
        assert!(text_access(lines, "text-2").contains(" path=/healthz?KEY=<redacted> "));
        let last = text_access(lines, "text-3");
        assert!(last.contains(" route=\"(unmatched)\" status=404 "), "{last}");
        let everything = lines.join("\n");
        assert!(!everything.contains("hidden-1") && !everything.contains("hidden-2"), "a key in the logs");
    }
}

#[test]
fn with_access_off_no_request_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "access = false");
    let server = ChildServer::start(&config);
    let base = server.base();
    assert_eq!(request("GET", &format!("{base}/healthz"), &[], None).status, 200);
    // Errors are not logged either.
    assert_eq!(request("GET", &format!("{base}/no/such/page"), &[], None).status, 404);
    assert_eq!(request("GET", &format!("{base}/user"), &[], None).status, 401);
    let stdout = stop(server);
    let files = file_lines(&dir.path().join("data/logs"));
    assert!(!records(&stdout, "stdout").is_empty(), "the other lines are still written");
    assert!(!has_access_line(&stdout), "{stdout:?}");
    assert!(!has_access_line(&files), "{files:?}");
}

#[test]
fn a_zero_sample_drops_the_2xx_lines_and_keeps_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "access_sample = 0.0");
    let server = ChildServer::start(&config);
    let base = server.base();
    for i in 0..20 {
        let rid = format!("sample-ok-{i}");
        assert_eq!(request("GET", &format!("{base}/healthz"), &[("X-Request-Id", &rid)], None).status, 200);
    }
    let headers = [("X-Request-Id", "sample-404")];
    assert_eq!(request("GET", &format!("{base}/no/such/page"), &headers, None).status, 404);
    let headers = [("X-Request-Id", "sample-401")];
    assert_eq!(request("GET", &format!("{base}/user"), &headers, None).status, 401);
    let metrics = request("GET", &format!("{base}/metrics"), &[], None).text();
    assert!(
        metrics.lines().any(|l| l == "energyload_access_log_dropped_total 0"),
        "the dropped-lines counter is exported"
    );
    let stdout = stop(server);
    let files = file_lines(&dir.path().join("data/logs"));
    for (lines, source) in [(&stdout, "stdout"), (&files, "log file")] {
        let records = records(lines, source);
        assert_eq!(access(&records, "sample-404")["fields"]["status"], 404);
        assert_eq!(access(&records, "sample-401")["fields"]["status"], 401);
        let ok =
            records.iter().filter(|r| r["target"] == "energyload::access" && r["fields"]["status"] == 200);
        assert_eq!(ok.count(), 0, "no 2xx line (the /metrics answer included) in the {source}");
    }
}
